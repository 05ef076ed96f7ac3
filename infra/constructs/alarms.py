"""CloudWatch alarms (DLQ not empty, function errors and throttles, API 5xx and p95 latency,
a bundle that failed its self-check on the serving CPU) and the optional SNS topic they
notify."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.constructs.function_support import POWERTOOLS_METRICS_NAMESPACE
from infra.nag import acknowledge

PERIOD = Duration.minutes(5)
DLQ_PERIOD = Duration.minutes(1)
FUNCTION_ERRORS_THRESHOLD = 1
FUNCTION_THROTTLES_THRESHOLD = 1
API_5XX_THRESHOLD = 1
#: p95 of API Gateway's Latency (whole request, ms) over 3 consecutive 5-minute periods
API_LATENCY_P95_THRESHOLD_MS = 5000
API_LATENCY_EVALUATION_PERIODS = 3
#: the EMF metric alertfusion.selfcheck emits when a bundle may not serve on a CPU
SELFCHECK_FAILED_METRIC = "SelfCheckFailed"


class AlarmTopic(Construct):
    """An SNS topic (TLS only, encrypted with a key CloudWatch may use) and its e-mail
    subscription. SNS's AWS-managed key cannot be used by CloudWatch alarms, hence the CMK."""

    def __init__(self, scope: Construct, construct_id: str, *, email: str) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            description="alertfusion alarm topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],  # in a key policy "*" means this key
            )
        )
        self.topic = sns.Topic(
            self, "Topic", display_name="alertfusion alarms", master_key=self.key, enforce_ssl=True
        )
        self.topic.add_subscription(subscriptions.EmailSubscription(email))
        acknowledge(
            self.topic,
            "Serverless-SNSRedrivePolicy",
            "The only subscription is the operators' alarm e-mail: an undeliverable e-mail "
            "leaves the alarm visible in ALARM state in CloudWatch, and a dead-letter queue "
            "for it could only be alarmed through this same failing channel.",
        )


class Alarms(Construct):
    """Alarms of one stack; each notifies `topic` when there is one."""

    def __init__(self, scope: Construct, construct_id: str, *, topic: sns.ITopic | None) -> None:
        super().__init__(scope, construct_id)
        self._action = cw_actions.SnsAction(topic) if topic is not None else None
        self.alarms: list[cloudwatch.Alarm] = []

    def _add(self, alarm: cloudwatch.Alarm) -> cloudwatch.Alarm:
        if self._action is not None:
            alarm.add_alarm_action(self._action)
            alarm.add_ok_action(self._action)
        self.alarms.append(alarm)
        return alarm

    def queue_not_empty(self, name: str, queue: sqs.IQueue) -> cloudwatch.Alarm:
        return self._add(
            cloudwatch.Alarm(
                self,
                f"{name}NotEmpty",
                alarm_description=f"{name}: a message landed in a dead-letter queue",
                metric=queue.metric_approximate_number_of_messages_visible(
                    period=DLQ_PERIOD, statistic="Maximum"
                ),
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        )

    def function_health(self, name: str, function: lambda_.IFunction) -> None:
        for suffix, metric, threshold in (
            ("Errors", function.metric_errors(period=PERIOD), FUNCTION_ERRORS_THRESHOLD),
            ("Throttles", function.metric_throttles(period=PERIOD), FUNCTION_THROTTLES_THRESHOLD),
        ):
            self._add(
                cloudwatch.Alarm(
                    self,
                    f"{name}{suffix}",
                    alarm_description=f"{name}: {suffix.lower()} in the last 5 minutes",
                    metric=metric,
                    threshold=threshold,
                    evaluation_periods=1,
                    comparison_operator=(
                        cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
                    ),
                    treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                )
            )

    def state_machine_failed(self, name: str, machine: sfn.StateMachine) -> cloudwatch.Alarm:
        """A run of the state machine failed (redrive it once the cause is fixed)."""
        return self._add(
            cloudwatch.Alarm(
                self,
                f"{name}RunsFailed",
                alarm_description=f"{name}: a run failed in the last 5 minutes",
                metric=machine.metric_failed(period=PERIOD, statistic="Sum"),
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        )

    def api_health(self, name: str, api: apigw.RestApi) -> None:
        self._add(
            cloudwatch.Alarm(
                self,
                f"{name}5xx",
                alarm_description=f"{name}: 5xx answers in the last 5 minutes",
                metric=api.metric_server_error(period=PERIOD, statistic="Sum"),
                threshold=API_5XX_THRESHOLD,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        )
        self._add(
            cloudwatch.Alarm(
                self,
                f"{name}LatencyP95",
                alarm_description=(
                    f"{name}: p95 latency above {API_LATENCY_P95_THRESHOLD_MS} ms for "
                    f"{API_LATENCY_EVALUATION_PERIODS} x 5 minutes"
                ),
                metric=api.metric_latency(period=PERIOD, statistic="p95"),
                threshold=API_LATENCY_P95_THRESHOLD_MS,
                evaluation_periods=API_LATENCY_EVALUATION_PERIODS,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        )

    def selfcheck_failed(self, name: str, service: str) -> cloudwatch.Alarm:
        """A cold start of `service` (its POWERTOOLS_SERVICE_NAME) found that the bundle's
        models disagree with fp32 on its CPU and had no fp32 fallback: it refuses to answer."""
        return self._add(
            cloudwatch.Alarm(
                self,
                f"{name}SelfCheckFailed",
                alarm_description=(
                    f"{name}: the model bundle failed its self-check on a serving CPU and "
                    "answers SELFCHECK_FAILED (see the function's 'self-check failed' log)"
                ),
                metric=cloudwatch.Metric(
                    namespace=POWERTOOLS_METRICS_NAMESPACE,
                    metric_name=SELFCHECK_FAILED_METRIC,
                    dimensions_map={"service": service},
                    period=PERIOD,
                    statistic="Sum",
                ),
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        )
