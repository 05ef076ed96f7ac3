"""The HTTP API: API Gateway REST API (API key + usage plan) → the API function (the image
with command `functions.api.app.handler`, Mangum around the FastAPI app).

Size limits: API Gateway accepts at most 10 MB per request and Lambda at most 6 MB per
synchronous invocation payload; binary bodies arrive base64-encoded (+33 %), so the API
answers 413 PAYLOAD_TOO_LARGE above ~4 MB of raw audio and points the client to
`POST /uploads` (presigned POST straight to S3, up to `max_upload_bytes`).
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, SecretValue
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import InfraConfig
from infra.constructs.audio_bucket import UPLOADS_PREFIX
from infra.constructs.function_support import (
    acknowledge_xray,
    engine_environment,
    function_log_group,
    grant_bundle_read,
    lambda_role,
    log_retention,
    pipeline_environment,
)
from infra.constructs.permissions import TABLE_READ_WRITE_ACTIONS, allow_objects, allow_table
from infra.constructs.service_image import API_COMMAND, ServiceImage
from infra.nag import acknowledge
from infra.stacks.shared import PipelineRefs

BINARY_MEDIA_TYPES = ["multipart/form-data", "audio/*", "application/octet-stream"]


class AlertFusionApi(Construct):
    """`function` (the API Lambda), `api` (REST API), `key` (the client API key), `plan`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        image: ServiceImage,
        refs: PipelineRefs,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        log_group = function_log_group(self, "Logs", config, removal_policy)
        self.role = lambda_role(self, "Role", log_group)
        environment = pipeline_environment(config, refs.resources, service="api")
        environment.update(engine_environment(config))
        self.function = lambda_.DockerImageFunction(
            self,
            "Function",
            description="alertfusion HTTP API (FastAPI behind Mangum)",
            code=image.lambda_code(API_COMMAND),
            architecture=lambda_.Architecture.X86_64,
            role=self.role,
            log_group=log_group,
            memory_size=config.api_memory_mb,
            timeout=Duration.seconds(config.api_timeout_seconds),
            tracing=lambda_.Tracing.ACTIVE,
            environment=environment,
        )
        # POST /uploads presigns a POST to uploads/<job>.<ext> (the signature carries this
        # role's s3:PutObject); /predict_s3 reads objects under uploads/.
        allow_objects(
            self.role,
            ["s3:GetObject", "s3:PutObject"],
            {UPLOADS_PREFIX: refs.objects_arn(UPLOADS_PREFIX)},
        )
        allow_table(self.role, refs.table_arn, TABLE_READ_WRITE_ACTIONS)
        grant_bundle_read(config, self.role)
        acknowledge_xray(self.role)
        acknowledge(
            self.function,
            "Serverless-LambdaDLQ",
            "API Gateway invokes this function synchronously: the caller gets the error, "
            "there is no asynchronous event to dead-letter.",
        )

        self.api = self._rest_api(config)
        self.key = self.api.add_api_key(
            "ClientKey",
            description="alertfusion client key (value: the ClientApiKey secret)",
            value=SecretValue.secrets_manager(refs.api_key_secret_arn).unsafe_unwrap(),
        )
        self.plan = self.api.add_usage_plan(
            "Plan",
            description="per-key throttling and daily quota",
            throttle=apigw.ThrottleSettings(
                rate_limit=config.api_throttle_rate_limit,
                burst_limit=config.api_throttle_burst_limit,
            ),
            quota=apigw.QuotaSettings(limit=config.api_quota_per_day, period=apigw.Period.DAY),
            api_stages=[apigw.UsagePlanPerApiStage(api=self.api, stage=self.api.deployment_stage)],
        )
        self.plan.add_api_key(self.key)

    def _rest_api(self, config: InfraConfig) -> apigw.LambdaRestApi:
        access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=log_retention(config),
            removal_policy=RemovalPolicy.DESTROY,
        )
        api = apigw.LambdaRestApi(
            self,
            "Api",
            rest_api_name=f"alertfusion-{config.stage}",
            description="alertfusion: emergency detection from short Korean recordings",
            handler=self.function,
            proxy=True,
            endpoint_types=[apigw.EndpointType.REGIONAL],
            binary_media_types=BINARY_MEDIA_TYPES,
            default_method_options=apigw.MethodOptions(api_key_required=True),
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            deploy_options=apigw.StageOptions(
                stage_name=config.stage,
                tracing_enabled=True,
                metrics_enabled=True,
                # Errors only, and never request/response bodies: they hold audio.
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,
                throttling_rate_limit=config.api_throttle_rate_limit,
                throttling_burst_limit=config.api_throttle_burst_limit,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=False,
                ),
            ),
        )
        acknowledge(
            api,
            "AwsSolutions-APIG2",
            "One greedy {proxy+} integration carries multipart audio, raw audio and JSON for "
            "several routes; API Gateway models cannot describe multipart audio, so the "
            "FastAPI app validates every request (pydantic) and answers a precise 4xx.",
        )
        acknowledge(
            api,
            "AwsSolutions-APIG4",
            "Clients authenticate with an API key (required on every method) under a usage "
            "plan with throttling and a quota: the original app's model. Per-user identity "
            "is outside this service's scope.",
        )
        acknowledge(
            api,
            "AwsSolutions-COG4",
            "No Cognito user pool: callers are apps holding the client API key, not end "
            "users signing in (see AwsSolutions-APIG4).",
        )
        acknowledge(
            api,
            "AwsSolutions-APIG3",
            "No WAF web ACL by default (about 6 USD/month + requests): the usage plan throttles "
            "and caps every key; attach a web ACL to the stage when the API is public at scale.",
        )
        acknowledge(
            api,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonAPIGatewayPushToCloudWatchLogs]",
            "API Gateway's account-level CloudWatch role (needed for stage execution logs) "
            "uses the AWS-managed service policy made for exactly that purpose.",
        )
        return api
