"""The HTTP API: API Gateway REST API (API key + usage plan) → the API function (the image
with command `functions.api.app.handler`, Mangum around the FastAPI app).

Routes: every resource has ANY with the API key required, and one greedy `{proxy+}` sends
every other path to the app. A browser cannot send a key when it loads a page, nor can a
load balancer's or uptime checker's health probe, so GET alone is key-free on exactly
KEY_FREE_GET_PATHS: the page (`/`, `/upload`), its assets (`/static/{name}`), the probes
(`/healthz`, `/readyz`), the bundles' labels the page shows (`/bundles`: read from the
manifests, public as the page is), the schema (`/openapi.json`: it describes requests every one of
which needs the key, and the fallback, where the app itself checks the key, serves it
without one too) and how to sign in (`/auth/config`: the app client's id and the sign-in
page's URL, public in any case). With `cors_allowed_origins` set, OPTIONS is key-free on
every resource as well: browsers never send custom headers such as x-api-key on a CORS
preflight, so a preflight that needs the key fails and no cross-origin call can be made;
the app's CORS middleware answers it. Key-free methods do not count against a key's quota;
the stage's throttling limits them like every method.

End users (`-c auth=cognito|oidc`): the end-user routes END_USER_PATHS (`/uploads`,
`/jobs/{job_id}`, `/predict`, `/predict_s3`) take a signed-in user's bearer token instead of
the API key. With `cognito` the stack creates the user pool (infra/constructs/user_pool.py)
and API Gateway's Cognito authorizer refuses a bad token before the function runs (its 401
carries the API's error shape); with `oidc` (any other OpenID Connect issuer) no authorizer
stands in front and the function checks the token itself. It checks it in both modes
(functions.api.auth): it needs the user's subject, and the EC2 fallback has no gateway.
`/backfills` and every other path keep the API key (operators, servers).

Size limits: the API answers 413 PAYLOAD_TOO_LARGE above MAX_BODY_BYTES, the largest body
a synchronous Lambda invocation carries once base64-encoded (the arithmetic is at
`functions.api.settings.DEFAULT_MAX_BODY_BYTES`), and points the client to `POST /uploads`
(presigned POST straight to S3, up to `max_upload_bytes`).
"""

from __future__ import annotations

import json

from aws_cdk import Aws, Duration, RemovalPolicy, SecretValue, Size
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from functions.api.auth import REALM, REFUSED_MESSAGE
from functions.api.settings import COGNITO_SCOPE
from infra.config import InfraConfig
from infra.constructs.audio_bucket import EXPIRING_PREFIXES, UPLOADS_PREFIX
from infra.constructs.backfill import allow_backfill_control, backfill_environment
from infra.constructs.function_support import (
    TokenIssuer,
    acknowledge_snapstart_publish,
    acknowledge_xray,
    api_environment,
    auth_environment,
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
from infra.constructs.permissions import (
    TABLE_READ_WRITE_ACTIONS,
    allow_job_deletion,
    allow_objects,
    allow_table,
)
from infra.constructs.service_image import API_COMMAND, ServiceImage
from infra.constructs.user_pool import EndUsers
from infra.nag import acknowledge
from infra.stacks.shared import PipelineRefs

BINARY_MEDIA_TYPES = ["multipart/form-data", "audio/*", "application/octet-stream"]
#: The GET routes a browser or a health probe calls without the API key (module docstring).
KEY_FREE_GET_PATHS = (
    "/",
    "/upload",
    "/static/{name}",
    "/healthz",
    "/readyz",
    "/bundles",
    "/openapi.json",
    "/auth/config",
)
#: Errors API Gateway itself answers (missing key, throttling, timeouts) before the app
#: could add CORS headers to them.
GATEWAY_ERROR_RESPONSES = (apigw.ResponseType.DEFAULT_4_XX, apigw.ResponseType.DEFAULT_5_XX)
#: The routes end users call (with `-c auth=cognito|oidc`: a bearer token, no API key).
END_USER_PATHS = ("/uploads", "/jobs/{job_id}", "/predict", "/predict_s3")
#: The page the hosted sign-in sends people back to (the Cognito client's callback URL).
PAGE_PATH = "/upload"


class AlertFusionApi(Construct):
    """`function` (the API Lambda), `api` (REST API), `key` (the client API key), `plan`,
    and with `-c auth=cognito` `users` (the user pool)."""

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
            ephemeral_storage_size=(
                Size.mebibytes(config.bundle_ephemeral_mib) if config.bundle_ephemeral_mib else None
            ),
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
        # DELETE /jobs/{id}: the recording, transcript, result file and Transcribe job
        allow_job_deletion(
            self,
            self.role,
            refs.objects_arn,
            prefixes=EXPIRING_PREFIXES,
            job_prefix=config.transcribe_job_prefix,
        )
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
        self.users: EndUsers | None = None
        self.authorizer: apigw.CognitoUserPoolsAuthorizer | None = None
        if config.auth == "cognito":
            self.users = EndUsers(
                self,
                "Users",
                config=config,
                page_url=self.page_url(config),
                removal_policy=removal_policy,
            )
            self.authorizer = apigw.CognitoUserPoolsAuthorizer(
                self, "UserAuthorizer", cognito_user_pools=[self.users.pool]
            )
        self._routes(config)
        self._gateway_responses(config)
        for name, value in auth_environment(config, self.token_issuer(config)).items():
            self.function.add_environment(name, value)
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

    def page_url(self, config: InfraConfig) -> str:
        """The page's URL on the API (`<ApiUrl>upload`), built from the REST API's id and the
        stage name rather than from the stage resource: the function's environment names the
        user pool client, whose callback URL this is, and the stage depends on the function
        through its deployment."""
        return (
            f"https://{self.api.rest_api_id}.execute-api.{Aws.REGION}.{Aws.URL_SUFFIX}/"
            f"{config.stage}{PAGE_PATH}"
        )

    def token_issuer(self, config: InfraConfig) -> TokenIssuer | None:
        """Whose tokens the API function accepts (None with the API key mode)."""
        if self.users is not None:
            return TokenIssuer(
                issuer=self.users.issuer,
                audiences=(self.users.client.user_pool_client_id,),
                hosted_ui_url=self.users.hosted_ui_url,
            )
        if config.auth == "oidc" and config.oidc_issuer:
            return TokenIssuer(config.oidc_issuer, tuple(config.oidc_audience))
        return None

    def _routes(self, config: InfraConfig) -> None:
        """GET key-free on KEY_FREE_GET_PATHS; with auth=cognito|oidc, ANY with a bearer
        token on END_USER_PATHS (the gateway's Cognito authorizer, or the function alone for
        oidc); ANY with the key on every other resource (so any other method of those paths,
        and every other path through `{proxy+}`, reaches the app only with the key);
        OPTIONS key-free everywhere when browsers of other origins call the API."""
        api = self.api
        if config.auth != "api_key":
            for path in END_USER_PATHS:
                end_user = api.root.resource_for_path(path)
                if self.authorizer is not None:
                    end_user.add_method(
                        "ANY",
                        api_key_required=False,
                        authorizer=self.authorizer,
                        authorization_type=apigw.AuthorizationType.COGNITO,
                        authorization_scopes=[COGNITO_SCOPE],
                    )
                else:
                    method = end_user.add_method("ANY", api_key_required=False)
                    _acknowledge_app_checks_token(method)
        for path in KEY_FREE_GET_PATHS:
            method = api.root.resource_for_path(path).add_method("GET", api_key_required=False)
            _acknowledge_key_free(method, "GET " + path)
        api.root.add_proxy(any_method=False)
        for resource in _tree(api.root):
            if resource.node.try_find_child("ANY") is None:
                _acknowledge_api_key(resource.add_method("ANY"))
            if config.cors_allowed_origins:
                options = resource.add_method("OPTIONS", api_key_required=False)
                _acknowledge_key_free(options, "the CORS preflight (OPTIONS)")

    def _gateway_responses(self, config: InfraConfig) -> None:
        """Errors API Gateway answers itself (403 for a missing or wrong key, 429 when
        throttled, 504 on a timeout) carry the allowed origin, so a browser client sees the
        status instead of a bare network error. A gateway response can name only one
        origin (it cannot choose among several per request); with several configured,
        only the app's own answers carry CORS headers. The Cognito authorizer's 401 answers
        in the API's own error shape, with the same words and challenge as the function's."""
        origins = config.cors_allowed_origins
        cors = {"Access-Control-Allow-Origin": f"'{origins[0]}'"} if len(origins) == 1 else {}
        if self.authorizer is not None:
            error = {"code": "UNAUTHORIZED", "message": REFUSED_MESSAGE, "request_id": "$ID"}
            body = json.dumps({"error": error}).replace("$ID", "$context.requestId")
            challenge = f'Bearer realm="{REALM}", error="invalid_token"'
            self.api.add_gateway_response(
                "Unauthorized",
                type=apigw.ResponseType.UNAUTHORIZED,
                status_code="401",
                response_headers={"WWW-Authenticate": f"'{challenge}'", **cors},
                templates={"application/json": body},
            )
        if not cors:
            return
        for response_type in GATEWAY_ERROR_RESPONSES:
            self.api.add_gateway_response(
                f"Cors{response_type.response_type}",
                type=response_type,
                response_headers=cors,
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
        "plan with throttling and a quota: servers, operators (/backfills) and, without "
        "-c auth, the original app. End users sign in on the end-user routes with "
        "-c auth=cognito|oidc.",
    )
    acknowledge(
        method,
        "AwsSolutions-COG4",
        "An API-key method (see AwsSolutions-APIG4): its callers are servers and operators "
        "holding the client key, not end users; end users' routes take Cognito tokens with "
        "-c auth=cognito.",
    )


def _acknowledge_app_checks_token(method: apigw.Method) -> None:
    reason = (
        "auth=oidc: an OpenID Connect issuer other than Cognito, which REST APIs have no "
        "native authorizer for; the API function verifies the bearer token (signature "
        "against the issuer's JWKS, issuer, audience, expiry) before any work, answers 401 "
        "otherwise, and the stage's throttling bounds what unauthenticated calls can cost."
    )
    acknowledge(method, "AwsSolutions-APIG4", reason)
    acknowledge(method, "AwsSolutions-COG4", reason)


def _acknowledge_key_free(method: apigw.Method, what: str) -> None:
    reason = (
        f"{what} is public by design: a browser loading the page, a health probe or a CORS "
        "preflight cannot send the API key. It returns no job, verdict or audio, and the "
        "stage's throttling limits it."
    )
    acknowledge(method, "AwsSolutions-APIG4", reason)
    if method.http_method != "OPTIONS":  # COG4 does not apply to preflights
        acknowledge(method, "AwsSolutions-COG4", reason)
