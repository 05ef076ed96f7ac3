"""The HTTP API: API Gateway REST API (API key + usage plan) → the API function (the image
with command `functions.api.app.handler`, Mangum around the FastAPI app).

Routes: every resource has ANY with the API key required, and one greedy `{proxy+}` sends
every other path to the app. A browser cannot send a key when it loads a page, nor can a
load balancer's or uptime checker's health probe, so GET alone is key-free on exactly
KEY_FREE_GET_PATHS: the page (`/`, `/upload`), its assets (`/static/{name}`), the probes
(`/healthz`, `/readyz`) and the schema (`/openapi.json`: it describes requests every one of
which needs the key, and the fallback, where the app itself checks the key, serves it
without one too). With `cors_allowed_origins` set, OPTIONS is key-free on every resource as
well: browsers never send custom headers such as x-api-key on a CORS preflight, so a
preflight that needs the key fails and no cross-origin call can be made; the app's CORS
middleware answers it. Key-free methods do not count against a key's quota; the stage's
throttling limits them like every method.

Size limits: the API answers 413 PAYLOAD_TOO_LARGE above MAX_BODY_BYTES, the largest body
a synchronous Lambda invocation carries once base64-encoded (the arithmetic is at
`functions.api.settings.DEFAULT_MAX_BODY_BYTES`), and points the client to `POST /uploads`
(presigned POST straight to S3, up to `max_upload_bytes`).
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, SecretValue
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import InfraConfig
from infra.constructs.audio_bucket import UPLOADS_PREFIX
from infra.constructs.backfill import allow_backfill_control, backfill_environment
from infra.constructs.function_support import (
    acknowledge_snapstart_publish,
    acknowledge_xray,
    api_environment,
    engine_environment,
    function_log_group,
    grant_bundle_read,
    lambda_architecture,
    lambda_role,
    live_target,
    log_retention,
    pipeline_environment,
    snap_start,
)
from infra.constructs.permissions import TABLE_READ_WRITE_ACTIONS, allow_objects, allow_table
from infra.constructs.service_image import API_COMMAND, ServiceImage
from infra.nag import acknowledge
from infra.stacks.shared import PipelineRefs

BINARY_MEDIA_TYPES = ["multipart/form-data", "audio/*", "application/octet-stream"]
#: The GET routes a browser or a health probe calls without the API key (module docstring).
KEY_FREE_GET_PATHS = ("/", "/upload", "/static/{name}", "/healthz", "/readyz", "/openapi.json")
#: Errors API Gateway itself answers (missing key, throttling, timeouts) before the app
#: could add CORS headers to them.
GATEWAY_ERROR_RESPONSES = (apigw.ResponseType.DEFAULT_4_XX, apigw.ResponseType.DEFAULT_5_XX)


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
        environment.update(api_environment(config, gateway_checks_key=True))
        # POST /backfills and GET /backfills/{id} (infra/constructs/backfill.py)
        environment.update(backfill_environment(config))
        environment["BACKFILL_STATE_MACHINE_ARN"] = refs.backfill_state_machine_arn
        self.function = lambda_.DockerImageFunction(
            self,
            "Function",
            description="alertfusion HTTP API (FastAPI behind Mangum)",
            code=image.lambda_code(API_COMMAND),
            architecture=lambda_architecture(config),
            snap_start=snap_start(config),
            role=self.role,
            log_group=log_group,
            memory_size=config.api_memory_mb,
            # a burst of uploads never takes the API's concurrency (infra.concurrency)
            reserved_concurrent_executions=config.concurrency.api,
            timeout=Duration.seconds(config.api_timeout_seconds),
            tracing=lambda_.Tracing.ACTIVE,
            environment=environment,
        )
        acknowledge_snapstart_publish(self.function, config)
        #: what API Gateway invokes (the `live` alias when versioned)
        self.target = live_target(self.function, config)
        # POST /uploads presigns a POST to uploads/<job>.<ext> (the signature carries this
        # role's s3:PutObject); /predict_s3 reads objects under uploads/ (PREDICT_S3_PREFIXES,
        # which the tests tie to this grant).
        allow_objects(
            self.role,
            ["s3:GetObject", "s3:PutObject"],
            {UPLOADS_PREFIX: refs.objects_arn(UPLOADS_PREFIX)},
        )
        allow_table(self.role, refs.table_arn, TABLE_READ_WRITE_ACTIONS)
        allow_backfill_control(
            self,
            self.role,
            state_machine_arn=refs.backfill_state_machine_arn,
            bucket_arn=refs.bucket_arn,
            config=config,
        )
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

    def _rest_api(self, config: InfraConfig) -> apigw.RestApi:
        access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=log_retention(config),
            removal_policy=RemovalPolicy.DESTROY,
        )
        api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=f"alertfusion-{config.stage}",
            description="alertfusion: emergency detection from short Korean recordings",
            # One function behind every method: one invoke permission for the whole API
            # instead of two per method (Lambda's resource policy is capped at 20 KB).
            default_integration=apigw.LambdaIntegration(
                self.target, scope_permission_to_method=False
            ),
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
        self._routes(api, preflight=bool(config.cors_allowed_origins))
        self._gateway_cors(api, config.cors_allowed_origins)
        acknowledge(
            api,
            "AwsSolutions-APIG2",
            "One greedy {proxy+} integration carries multipart audio, raw audio and JSON for "
            "several routes; API Gateway models cannot describe multipart audio, so the "
            "FastAPI app validates every request (pydantic) and answers a precise 4xx.",
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

    def _routes(self, api: apigw.RestApi, *, preflight: bool) -> None:
        """GET key-free on KEY_FREE_GET_PATHS; ANY with the key on every resource (so any
        other method of those paths, and every other path through `{proxy+}`, reaches the
        app only with the key); OPTIONS key-free everywhere when `preflight`."""
        for path in KEY_FREE_GET_PATHS:
            method = api.root.resource_for_path(path).add_method("GET", api_key_required=False)
            _acknowledge_key_free(method, "GET " + path)
        api.root.add_proxy(any_method=False)
        for resource in _tree(api.root):
            _acknowledge_api_key(resource.add_method("ANY"))
            if preflight:
                options = resource.add_method("OPTIONS", api_key_required=False)
                _acknowledge_key_free(options, "the CORS preflight (OPTIONS)")

    @staticmethod
    def _gateway_cors(api: apigw.RestApi, origins: list[str]) -> None:
        """Errors API Gateway answers itself (403 for a missing or wrong key, 429 when
        throttled, 504 on a timeout) carry the allowed origin, so a browser client sees the
        status instead of a bare network error. A gateway response can name only one
        origin (it cannot choose among several per request); with several configured,
        only the app's own answers carry CORS headers."""
        if len(origins) != 1:
            return
        for response_type in GATEWAY_ERROR_RESPONSES:
            api.add_gateway_response(
                f"Cors{response_type.response_type}",
                type=response_type,
                response_headers={"Access-Control-Allow-Origin": f"'{origins[0]}'"},
            )


def _tree(root: apigw.IResource) -> list[apigw.IResource]:
    """`root` and every resource below it, parents before children."""
    found: list[apigw.IResource] = [root]
    for child in root.node.children:
        if isinstance(child, apigw.Resource):
            found += _tree(child)
    return found


def _acknowledge_api_key(method: apigw.Method) -> None:
    acknowledge(
        method,
        "AwsSolutions-APIG4",
        "Clients authenticate with the API key (required on this method) under a usage "
        "plan with throttling and a quota: the original app's model. Per-user identity is "
        "outside this service's scope.",
    )
    acknowledge(
        method,
        "AwsSolutions-COG4",
        "No Cognito user pool: callers are apps holding the client API key, not end users "
        "signing in (see AwsSolutions-APIG4).",
    )


def _acknowledge_key_free(method: apigw.Method, what: str) -> None:
    reason = (
        f"{what} is public by design: a browser loading the page, a health probe or a CORS "
        "preflight cannot send the API key. It returns no job, verdict or audio, and the "
        "stage's throttling limits it."
    )
    acknowledge(method, "AwsSolutions-APIG4", reason)
    if method.http_method != "OPTIONS":  # COG4 does not apply to preflights
        acknowledge(method, "AwsSolutions-COG4", reason)
