"""Backfills: the Step Functions Distributed Map over an S3 prefix and the backfill function.

The state machine's definition is alertfusion.backfill.definition's, the same text the local
stack runs in moto's interpreter; CloudFormation fills its ``${...}`` placeholders
(DefinitionSubstitutions). Sizing (concurrency, batch, start rate, tolerated failures) comes
from the settings through alertfusion.backfill.plan.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, Fn, RemovalPolicy, Stack, Token
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from alertfusion.backfill.definition import MAP_RUN_RESULTS_PREFIX, definition_text
from alertfusion.backfill.plan import BackfillPlan, plan_for
from alertfusion.keys import BACKFILL_PREFIX
from infra.config import REPO_ROOT, InfraConfig
from infra.constructs.audio_bucket import AudioBucket
from infra.constructs.function_support import (
    PipelineFunctionProps,
    acknowledge_xray,
    acknowledge_zip_runtime,
    function_log_group,
    lambda_architecture,
    lambda_role,
    log_retention,
    pipeline_environment,
)
from infra.constructs.jobs_table import JobsTable
from infra.constructs.layers import ZIP_RUNTIME, FunctionLayers
from infra.constructs.permissions import TABLE_READ_WRITE_ACTIONS, allow_objects, allow_table
from infra.constructs.queues import PipelineQueues
from infra.nag import acknowledge, acknowledge_wildcard_resource

BACKFILL_ASSET_DIR = REPO_ROOT / "functions" / "backfill"
BACKFILL_HANDLER = "app.handler"
#: one batch: a header probe and two conditional writes per object (admit), or one read per
#: job (check), or reading every batch file of the run (summarize)
BACKFILL_TIMEOUT_SECONDS = 120
BACKFILL_MEMORY_MB = 256
ZIP_ASSET_EXCLUDES = ["__pycache__", "*.pyc", "*.pyo"]

_LOG_DELIVERY_REASON = (
    "Step Functions' logging to CloudWatch Logs needs logs:CreateLogDelivery and its "
    "companions, which support no resource-level permissions (the Step Functions developer "
    "guide's policy names '*'); CDK adds exactly that statement."
)
_CHILD_REASON = (
    "A Distributed Map starts, describes and stops its own child executions: their ARNs "
    "are this state machine's name followed by run-time ids, so an execution-name prefix "
    "is the narrowest resource."
)


def backfill_environment(config: InfraConfig) -> dict[str, str]:
    """What `alertfusion.backfill.plan.BackfillSettings` reads (functions and API)."""
    s = config.backfill_settings()
    return {
        "TRANSCRIBE_CONCURRENT_JOBS_QUOTA": str(s.transcribe_concurrent_jobs_quota),
        "TRANSCRIBE_START_TPS_QUOTA": str(s.transcribe_start_tps_quota),
        "BACKFILL_QUOTA_SHARE": str(s.quota_share),
        "BACKFILL_BATCH_SIZE": str(s.batch_size),
        "BACKFILL_TOLERATED_FAILURE_PERCENTAGE": str(s.tolerated_failure_percentage),
        "BACKFILL_POLL_SECONDS": str(s.poll_seconds),
        "BACKFILL_PREFIXES": ",".join(s.prefixes),
        **({} if s.map_width is None else {"BACKFILL_MAP_WIDTH": str(s.map_width)}),
    }


def backfill_plan(config: InfraConfig) -> BackfillPlan:
    return plan_for(config.transcribe_policy, config.backfill_settings())


def allow_backfill_reads(role: iam.IRole, bucket_arn: str, config: InfraConfig) -> None:
    """GetObject on every backfill prefix (what Transcribe reads with the caller's role)."""
    assert isinstance(role, iam.Role)
    allow_objects(
        role,
        ["s3:GetObject"],
        {prefix: f"{bucket_arn}/{prefix}*" for prefix in config.backfill_prefixes},
    )


def allow_list(role: iam.Role, bucket_arn: str, prefixes: list[str]) -> None:
    """ListBucket, only under `prefixes` (the s3:prefix condition)."""
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["s3:ListBucket"],
            resources=[bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{p}*" for p in prefixes]}},
        )
    )


def allow_backfill_control(
    scope: Construct,
    role: iam.Role,
    *,
    state_machine_arn: str,
    bucket_arn: str,
    config: InfraConfig,
) -> None:
    """What starts and watches backfills (the API): start executions of the state machine,
    describe them and their map runs, list and probe the backfill prefixes (dry runs), read
    the runs' results."""
    stack = Stack.of(scope)
    name = _name_of(state_machine_arn)
    executions = stack.format_arn(
        service="states",
        resource="execution",
        resource_name=f"{name}:*",
        arn_format=_colon_arn(),
    )
    map_runs = stack.format_arn(
        service="states", resource="mapRun", resource_name=f"{name}/*", arn_format=_colon_arn()
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(actions=["states:StartExecution"], resources=[state_machine_arn])
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["states:DescribeExecution", "states:ListMapRuns", "states:RedriveExecution"],
            resources=[executions],
        )
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(actions=["states:DescribeMapRun"], resources=[map_runs])
    )
    for arn in (executions, map_runs):
        acknowledge_wildcard_resource(role, role, arn, _CHILD_REASON)
    allow_list(role, bucket_arn, [*config.backfill_prefixes, BACKFILL_PREFIX])
    allow_objects(
        role,
        ["s3:GetObject"],
        {
            **{p: f"{bucket_arn}/{p}*" for p in config.backfill_prefixes},
            BACKFILL_PREFIX: f"{bucket_arn}/{BACKFILL_PREFIX}*",
        },
    )


def _colon_arn() -> ArnFormat:
    return ArnFormat.COLON_RESOURCE_NAME


def _name_of(state_machine_arn: str) -> str:
    if Token.is_unresolved(state_machine_arn):
        return Fn.select(6, Fn.split(":", state_machine_arn))
    return state_machine_arn.rsplit(":", 1)[-1]


class Backfill(Construct):
    """`function` (admit, check, summarize) and `state_machine` (the Distributed Map)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        props: PipelineFunctionProps,
        bucket: AudioBucket,
        table: JobsTable,
        queues: PipelineQueues,
        layers: FunctionLayers,
        classifier_role: iam.IRole,
    ) -> None:
        super().__init__(scope, construct_id)
        config, removal_policy = props.config, props.removal_policy
        self.plan = backfill_plan(config)
        bucket_arn = bucket.bucket.bucket_arn
        log_group = function_log_group(self, "Logs", config, removal_policy)
        self.role = lambda_role(self, "Role", log_group)
        environment = pipeline_environment(config, props.resources, service="backfill")
        environment.update(backfill_environment(config))
        self.function = lambda_.Function(
            self,
            "Function",
            description="alertfusion backfill: admit a batch, check its jobs, summarize a run",
            runtime=ZIP_RUNTIME,
            architecture=lambda_architecture(config),
            handler=BACKFILL_HANDLER,
            code=lambda_.Code.from_asset(str(BACKFILL_ASSET_DIR), exclude=ZIP_ASSET_EXCLUDES),
            layers=layers.all,
            role=self.role,
            log_group=log_group,
            memory_size=BACKFILL_MEMORY_MB,
            # the map's children and the summary (infra.concurrency)
            reserved_concurrent_executions=config.concurrency.backfill,
            timeout=Duration.seconds(BACKFILL_TIMEOUT_SECONDS),
            tracing=lambda_.Tracing.ACTIVE,
            environment=environment,
        )
        acknowledge_zip_runtime(self.function)
        acknowledge(
            self.function,
            "Serverless-LambdaDLQ",
            "Step Functions invokes this function synchronously: the state machine retries "
            "and records failures; there is no asynchronous event to dead-letter.",
        )
        allow_backfill_reads(self.role, bucket_arn, config)
        allow_objects(
            self.role,
            ["s3:GetObject", "s3:PutObject"],
            {BACKFILL_PREFIX: bucket.objects_arn(BACKFILL_PREFIX)},
        )
        allow_list(self.role, bucket_arn, [BACKFILL_PREFIX])
        # a check reads its batch's jobs in one BatchGetItem
        allow_table(
            self.role, table.table.table_arn, [*TABLE_READ_WRITE_ACTIONS, "dynamodb:BatchGetItem"]
        )
        acknowledge_xray(self.role)
        # the classifier reads backfilled audio, and Transcribe reads it with its role
        allow_backfill_reads(classifier_role, bucket_arn, config)

        self.state_machine = self._state_machine(config, bucket, queues, removal_policy)

    def _state_machine(
        self,
        config: InfraConfig,
        bucket: AudioBucket,
        queues: PipelineQueues,
        removal_policy: RemovalPolicy,
    ) -> sfn.StateMachine:
        role = iam.Role(
            self,
            "StateMachineRole",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description="alertfusion backfill state machine: least privilege",
        )
        logs_group = logs.LogGroup(
            self,
            "StateMachineLogs",
            retention=log_retention(config),
            removal_policy=removal_policy,
        )
        machine = sfn.StateMachine(
            self,
            "StateMachine",
            comment="alertfusion backfill (alertfusion.backfill.definition)",
            definition_body=sfn.DefinitionBody.from_string(definition_text(self.plan)),
            definition_substitutions={
                "BackfillFunctionArn": self.function.function_arn,
                "WorkQueueUrl": queues.work.queue_url,
                "AudioBucket": bucket.bucket.bucket_name,
            },
            state_machine_type=sfn.StateMachineType.STANDARD,
            role=role,
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=logs_group, level=sfn.LogLevel.ALL),
        )
        self.function.grant_invoke(role)
        queues.work.grant_send_messages(role)
        bucket_arn = bucket.bucket.bucket_arn
        allow_list(role, bucket_arn, config.backfill_prefixes)
        results = f"{bucket_arn}/{MAP_RUN_RESULTS_PREFIX}/*"
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[
                    "s3:PutObject",
                    "s3:GetObject",
                    "s3:ListMultipartUploadParts",
                    "s3:AbortMultipartUpload",
                ],
                resources=[results],
            )
        )
        acknowledge_wildcard_resource(
            role,
            role,
            results,
            "The map run's ResultWriter writes files named by Step Functions at run time "
            "under this prefix.",
        )
        # the Distributed Map runs its children as executions of this state machine; a
        # policy of its own (not the role's default) so that the machine does not depend
        # on a policy that names it
        stack = Stack.of(self)
        executions = stack.format_arn(
            service="states",
            resource="execution",
            resource_name=f"{machine.state_machine_name}/*",
            arn_format=_colon_arn(),
        )
        children = iam.Policy(
            self,
            "ChildWorkflows",
            roles=[role],
            statements=[
                iam.PolicyStatement(
                    actions=["states:StartExecution"], resources=[machine.state_machine_arn]
                ),
                iam.PolicyStatement(
                    actions=["states:DescribeExecution", "states:StopExecution"],
                    resources=[executions],
                ),
            ],
        )
        acknowledge_wildcard_resource(children, children, executions, _CHILD_REASON)
        acknowledge(role, "AwsSolutions-IAM5[Resource::*]", _LOG_DELIVERY_REASON)
        acknowledge_wildcard_resource(
            role,
            role,
            f"{self.function.function_arn}:*",
            "Invoking the backfill function's versions and aliases too (CDK's grant_invoke "
            "names the function and its qualifiers).",
        )
        return machine
