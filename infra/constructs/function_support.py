"""What every function shares: its log group, its own role, the pipeline's environment."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from functions.api.settings import COGNITO_SCOPE, DEFAULT_MAX_BODY_BYTES
from infra.config import LOG_RETENTION_DAYS, InfraConfig, s3_parts
from infra.constructs.audio_bucket import UPLOADS_PREFIX
from infra.nag import acknowledge

POWERTOOLS_METRICS_NAMESPACE = "alertfusion"
#: The alias callers invoke when the image functions publish versions (snapstart or
#: provisioned concurrency): event sources, EventBridge targets and the API integration.
LIVE_ALIAS = "live"
#: Set on the image functions whose init runs ahead of the first request (a SnapStart
#: snapshot, provisioned concurrency): the handler module loads the engine at import, so the
#: snapshot / the prepared sandbox already holds the ONNX Runtime sessions.
WARM_ON_INIT_ENV = "ALERTFUSION_WARM_ON_INIT"
POWERTOOLS_LOG_LEVEL = "INFO"
#: What `POST /predict_s3` may read: the API's role may read objects only under uploads/.
PREDICT_S3_PREFIXES = (UPLOADS_PREFIX,)

_XRAY_REASON = (
    "X-Ray tracing (tracing=ACTIVE): xray:PutTraceSegments and xray:PutTelemetryRecords "
    "support no resource-level permissions, so the statement CDK adds must name '*'."
)


@dataclass(frozen=True)
class PipelineResources:
    """Names the functions find their resources by (tokens or imported values)."""

    bucket_name: str
    table_name: str
    event_bus_name: str
    work_queue_url: str


@dataclass(frozen=True)
class PipelineFunctionProps:
    """What the stack hands every pipeline function construct alike (starter, classifier,
    sweeper); each construct takes its own resources (bucket, table, queues...) beside it."""

    config: InfraConfig
    resources: PipelineResources
    removal_policy: RemovalPolicy


def pipeline_environment(
    config: InfraConfig, resources: PipelineResources, *, service: str
) -> dict[str, str]:
    """The environment of `alertfusion.settings.PipelineSettings` (+ Powertools)."""
    return {
        "AUDIO_BUCKET": resources.bucket_name,
        "JOBS_TABLE": resources.table_name,
        "EVENT_BUS_NAME": resources.event_bus_name,
        "WORK_QUEUE_URL": resources.work_queue_url,
        "TRANSCRIBE_POLICY": config.transcribe_policy,
        "TRANSCRIPT_SOURCE": transcript_source(config),
        "TRANSCRIBE_LANGUAGE": config.transcribe_language,
        "TRANSCRIBE_JOB_PREFIX": config.transcribe_job_prefix,
        "MAX_UPLOAD_BYTES": str(config.max_upload_bytes),
        "MIN_AUDIO_SECONDS": str(config.min_audio_seconds),
        "MAX_AUDIO_SECONDS": str(config.max_audio_seconds),
        "JOB_TTL_DAYS": str(config.job_ttl_days),
        "STUCK_AFTER_SECONDS": str(config.stuck_after_seconds),
        "HARD_TIMEOUT_SECONDS": str(config.hard_timeout_seconds),
        "POWERTOOLS_SERVICE_NAME": service_name(service),
        "POWERTOOLS_METRICS_NAMESPACE": POWERTOOLS_METRICS_NAMESPACE,
        "POWERTOOLS_LOG_LEVEL": POWERTOOLS_LOG_LEVEL,
    }


def transcript_source(config: InfraConfig) -> str:
    """TRANSCRIPT_SOURCE from the baked bundle's recipe: "model" when it transcribes with its
    own speech-to-text model (then no function starts Amazon Transcribe). An S3 bundle is not
    read at synth: "aws_transcribe", as for today's system."""
    return "model" if config.default_transcribes_itself else "aws_transcribe"


def service_name(service: str) -> str:
    """A function's POWERTOOLS_SERVICE_NAME: its logs' service key and its metrics' dimension."""
    return f"alertfusion-{service}"


def api_environment(config: InfraConfig, *, gateway_checks_key: bool) -> dict[str, str]:
    """What `functions.api.settings.ApiSettings` reads, set by the stack. API_KEY_REQUIRED is
    false behind API Gateway (the gateway checks the key; the function gets no API_KEY) and
    true on the fallback (which adds API_KEY from Secrets Manager). MAX_BODY_BYTES is the
    app's default (`DEFAULT_MAX_BODY_BYTES` says why), written out so that the template
    states the limit and the fallback, which has no Lambda payload limit, keeps the same
    contract. The other settings keep the app's defaults on purpose: MAX_TEXT_CHARS (the
    engine reads the same limit), UPLOAD_URL_EXPIRES_SECONDS (10 minutes to start the
    upload) and TRANSCRIBE_EXPECTED_SECONDS (its default describes real Transcribe, which
    deployments use; only the local stand-in answers faster)."""
    return {
        "API_KEY_REQUIRED": "false" if gateway_checks_key else "true",
        "CORS_ALLOW_ORIGINS": ",".join(config.cors_allowed_origins),
        "MAX_BODY_BYTES": str(DEFAULT_MAX_BODY_BYTES),
        "PREDICT_S3_PREFIXES": ",".join(PREDICT_S3_PREFIXES),
    }


@dataclass(frozen=True)
class TokenIssuer:
    """Whose tokens the API accepts (`-c auth=cognito|oidc`): the issuer (`iss`), the
    audiences, and the hosted sign-in the page sends people to (the pool's domain; none on
    the fallback, whose plain-HTTP page Cognito would not redirect back to)."""

    issuer: str
    audiences: tuple[str, ...]
    hosted_ui_url: str | None = None


def auth_environment(config: InfraConfig, issuer: TokenIssuer | None) -> dict[str, str]:
    """What functions.api.auth and functions.api.quotas read: the mode, the issuer (with
    auth=cognito|oidc) and the per-user quotas. The signing keys are the issuer's own
    (AUTH_JWKS_URL stays unset: only the local stack points it at moto)."""
    env = {
        "AUTH_MODE": config.auth,
        "QUOTA_UPLOADS_PER_HOUR": str(config.quota_uploads_per_hour),
        "QUOTA_UPLOADS_PER_DAY": str(config.quota_uploads_per_day),
        "QUOTA_PREDICTIONS_PER_HOUR": str(config.quota_predictions_per_hour),
        "QUOTA_PREDICTIONS_PER_DAY": str(config.quota_predictions_per_day),
    }
    if config.auth == "api_key":
        return env
    if issuer is None:
        raise ValueError(f"auth={config.auth} needs the token issuer")
    env["AUTH_ISSUER"] = issuer.issuer
    env["AUTH_AUDIENCE"] = ",".join(issuer.audiences)
    if config.auth == "cognito":
        # what the gateway's Cognito authorizer demands too (it then takes access tokens)
        env["AUTH_SCOPE"] = COGNITO_SCOPE
    if issuer.hosted_ui_url:
        env["AUTH_HOSTED_UI_URL"] = issuer.hosted_ui_url
    return env


def starter_environment(config: InfraConfig) -> dict[str, str]:
    """What the starter (no bundle in its package) is told of the bundles, so that it never
    starts Transcribe for a recipe without a text model (alertfusion.catalog): a baked
    bundle's BUNDLE_TEXT_MODEL, read from its manifest at synth; an S3 bundle's location
    (MODEL_BUNDLE) and the named bundles' (MODEL_BUNDLES), whose manifests the starter reads
    once per sandbox (grant_manifest_read)."""
    env = named_bundles_environment(config)
    if config.bundle_is_s3:
        return {"MODEL_BUNDLE": config.bundle, **env}
    from alertfusion.catalog import TEXT_MODEL_ENV, manifest_has_text_model

    found = manifest_has_text_model(config.bundle_dir / "manifest.json")
    if found is not None:
        env[TEXT_MODEL_ENV] = "true" if found else "false"
    return env


def named_bundles_environment(config: InfraConfig) -> dict[str, str]:
    """MODEL_BUNDLES (alertfusion.catalog) for `-c bundles=`; nothing without named bundles."""
    named = config.named_bundles
    return {"MODEL_BUNDLES": ",".join(f"{k}={v}" for k, v in named.items())} if named else {}


def engine_environment(config: InfraConfig) -> dict[str, str]:
    """What the image functions add: every writable path under /tmp (the image sets these
    too; repeating them here keeps a custom image from silently writing elsewhere)."""
    env = {
        "HOME": "/tmp",
        "BUNDLE_CACHE_DIR": "/tmp/alertfusion-bundle",
    }
    if config.bundle_is_s3:
        env["MODEL_BUNDLE"] = config.bundle
    env.update(named_bundles_environment(config))
    if config.versioned:
        env[WARM_ON_INIT_ENV] = "true"
    return env


def lambda_architecture(config: InfraConfig) -> lambda_.Architecture:
    """`-c architecture=`: every function, zip and image alike."""
    return (
        lambda_.Architecture.ARM_64
        if config.architecture == "arm64"
        else lambda_.Architecture.X86_64
    )


def snap_start(config: InfraConfig) -> lambda_.SnapStartConf | None:
    """`-c snapstart=true`: Lambda snapshots each published version after its init."""
    return lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if config.snapstart else None


def acknowledge_zip_runtime(function: Construct) -> None:
    """The zip functions run the same Python as the image, not the newest Lambda offers."""
    reason = (
        "Python 3.12 on purpose (infra.config.LAMBDA_PYTHON_VERSION): one Python for every "
        "function, the closest to the tests' 3.11 that the image's runtime lock can run on "
        "(Lambda's 3.11 is Amazon Linux 2, for which onnxruntime publishes no wheel); "
        "supported by Lambda until 2028-10-31."
    )
    acknowledge(function, "AwsSolutions-L1", reason)
    acknowledge(function, "Serverless-LambdaLatestVersion", reason)


def acknowledge_snapstart_publish(function: Construct, config: InfraConfig) -> None:
    """CDK warns that SnapStart needs a published version; `live_target` publishes one."""
    if config.snapstart:
        acknowledge(
            function,
            "@aws-cdk/aws-lambda:snapStartRequirePublish",
            "The live alias (function_support.live_target) publishes the current version "
            "and every caller invokes that alias, so SnapStart applies.",
        )


def live_target(
    function: lambda_.Function,
    config: InfraConfig,
    *,
    on_failure: lambda_.IDestination | None = None,
    retry_attempts: int | None = None,
    max_event_age: Duration | None = None,
) -> lambda_.IFunction:
    """What callers invoke. By default the function itself ($LATEST). With SnapStart or
    provisioned concurrency: the `live` alias of the version published from the current
    configuration (a new one whenever the code or the configuration changes), carrying the
    provisioned concurrency and the same asynchronous-invocation settings as the function
    (Lambda applies those per qualifier, so the alias needs its own)."""
    if not config.versioned:
        return function
    return lambda_.Alias(
        function,
        "Live",
        alias_name=LIVE_ALIAS,
        version=function.current_version,
        description="the version callers invoke (SnapStart restores / provisioned concurrency)",
        provisioned_concurrent_executions=config.provisioned or None,
        on_failure=on_failure,
        retry_attempts=retry_attempts,
        max_event_age=max_event_age,
    )


def log_retention(config: InfraConfig) -> logs.RetentionDays:
    return logs.RetentionDays[LOG_RETENTION_DAYS[config.log_retention_days]]


def function_log_group(
    scope: Construct, construct_id: str, config: InfraConfig, removal_policy: RemovalPolicy
) -> logs.LogGroup:
    return logs.LogGroup(
        scope,
        construct_id,
        retention=log_retention(config),
        removal_policy=removal_policy,
    )


def lambda_role(scope: Construct, construct_id: str, log_group: logs.ILogGroup) -> iam.Role:
    """A role of its own with no managed policy: write to its own log group, nothing else
    until the function grants what it needs."""
    role = iam.Role(
        scope,
        construct_id,
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=f"alertfusion {scope.node.id}: least privilege",
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["logs:CreateLogStream", "logs:PutLogEvents"],
            resources=[log_group.log_group_arn],
        )
    )
    return role


def acknowledge_destination_not_dlq(function: Construct) -> None:
    """Asynchronous failures go to an on-failure destination, which Lambda recommends over a
    dead-letter queue (it records the request, the response and the error)."""
    acknowledge(
        function,
        "Serverless-LambdaDLQ",
        "Failed asynchronous invocations go to the AsyncFailures queue through an on-failure "
        "destination, Lambda's successor to DLQs (keeps request, response and error); the "
        "queue is alarmed.",
    )


def acknowledge_xray(role: iam.Role) -> None:
    """The role's default policy holds the X-Ray statement that tracing adds."""
    acknowledge(role, "AwsSolutions-IAM5[Resource::*]", _XRAY_REASON)


def grant_manifest_read(config: InfraConfig, role: iam.Role) -> None:
    """Read access to the s3:// model bundles' manifest.json only (the starter's view)."""
    if not config.s3_bundles:
        return
    from alertfusion.manifest import MANIFEST_FILE

    arns = []
    for uri in config.s3_bundles:
        bucket, key = s3_parts(uri)
        arns.append(f"arn:{Stack.of(role).partition}:s3:::{bucket}/{key}/{MANIFEST_FILE}")
    role.add_to_principal_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=arns))


def grant_bundle_read(config: InfraConfig, role: iam.Role) -> None:
    """Read access to the s3:// model bundles only: each object itself, or the objects under
    it when the URI names a prefix (manifest.json + the files it lists)."""
    if not config.s3_bundles:
        return
    resources = []
    for uri in config.s3_bundles:
        bucket, key = s3_parts(uri)
        base = f"arn:{Stack.of(role).partition}:s3:::{bucket}/{key}"
        resources += [base, f"{base}/*"]
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::{base}/*]",
            "The model bundle URI may name a prefix (manifest.json and the files it lists); "
            "read-only access to exactly that prefix of the operator's bucket.",
        )
    role.add_to_principal_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=resources))
