"""Dependencies of the routes (`Depends`, so tests override them): settings, the API key
check, the caller (API key or bearer token), the engine (loaded lazily, only by the
classifying routes) and the AWS resources."""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPBearer

from alertfusion.errors import AlertFusionError, ReasonCode
from alertfusion.protocols import Classifier
from functions.api.auth import Principal, TokenRefused, TokenVerifier, bearer_token, log_refusal
from functions.api.settings import ApiSettings

if TYPE_CHECKING:
    from alertfusion.backfill.service import BackfillService
    from alertfusion.jobs import JobStore
    from alertfusion.settings import PipelineSettings


#: returns the (cached) engine, loading the bundle on first use; with an argument, the
#: engine of that named bundle (alertfusion.catalog); raises BundleError or ConfigError when
#: it cannot
ClassifierProvider = Callable[..., Classifier]


def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]

_api_key_header = APIKeyHeader(
    name="x-api-key",
    auto_error=False,
    description="The client key. Behind API Gateway the gateway checks it; where the app "
    "runs alone (EC2, local) the app checks it when API_KEY is set.",
)


def require_api_key(
    settings: SettingsDep, given: Annotated[str | None, Depends(_api_key_header)]
) -> None:
    """401 UNAUTHORIZED unless `x-api-key` matches API_KEY (compared in constant time);
    nothing to check when no key is configured or API_KEY_REQUIRED is false."""
    if not settings.checks_api_key or settings.api_key is None:
        return
    expected = settings.api_key.get_secret_value().encode("utf-8")
    if given is None or not hmac.compare_digest(given.encode("utf-8"), expected):
        raise AlertFusionError("missing or wrong x-api-key header", code=ReasonCode.UNAUTHORIZED)


# documents the bearer token in the schema; the header is read and checked by require_caller
_bearer = HTTPBearer(
    auto_error=False,
    description="A signed-in user's access token (AUTH_MODE cognito or oidc): the "
    "end-user routes want it instead of x-api-key.",
)
_verifier_lock = threading.Lock()


def get_verifier(request: Request) -> TokenVerifier:
    """The app's token verifier (its signing keys cached for the process), made on first use."""
    verifier: TokenVerifier | None = getattr(request.app.state, "verifier", None)
    if verifier is None:
        with _verifier_lock:
            verifier = getattr(request.app.state, "verifier", None)
            if verifier is None:
                verifier = TokenVerifier.from_settings(get_settings(request))
                request.app.state.verifier = verifier
    return verifier


def require_caller(
    request: Request,
    settings: SettingsDep,
    given: Annotated[str | None, Depends(_api_key_header)],
    _documented: Annotated[Any, Depends(_bearer)],
) -> Principal:
    """Who calls the end-user routes (`/uploads`, `/jobs`, `/predict`, `/predict_s3`): with
    AUTH_MODE api_key the API key's client (checked as `require_api_key` checks it), else the
    signed-in user of the `Authorization: Bearer` token (functions.api.auth; 401
    UNAUTHORIZED with one message for every refusal)."""
    if not settings.uses_tokens:
        require_api_key(settings, given)
        return Principal.for_api_key(given)
    try:
        return get_verifier(request).verify(bearer_token(request.headers.get("authorization")))
    except TokenRefused as exc:
        log_refusal(exc)
        raise


CallerDep = Annotated[Principal, Depends(require_caller)]


def _load_engine(bundle: str | None = None) -> Classifier:
    # the only place the API imports the engine (and with it numpy, onnxruntime, ...)
    from alertfusion.engine import get_engine

    engine: Classifier = get_engine(bundle)
    return engine


def get_classifier_provider() -> ClassifierProvider:
    """The engine, as a function: routes call it only after the cheap checks of the input
    passed, so a request refused for its bytes never loads the models."""
    return _load_engine


ClassifierDep = Annotated[ClassifierProvider, Depends(get_classifier_provider)]


@dataclass
class PipelineResources:
    """What `/uploads`, `/jobs` and `/predict_s3` use of the pipeline."""

    settings: PipelineSettings
    store: JobStore
    dynamodb: Any

    @property
    def s3(self) -> Any:
        """The S3 client, made on first use: `/jobs` never needs it, and making it beside
        the DynamoDB client would lengthen a cold process's first `/jobs` answer (S3's
        service model and endpoint rules are the largest botocore parses)."""
        from alertfusion import aws

        return aws.s3()

    @property
    def transcribe(self) -> Any:
        """The Transcribe client (deleting a job deletes its Transcribe job), on first use."""
        from alertfusion import aws

        return aws.transcribe()


_resources: PipelineResources | None = None


def get_pipeline() -> PipelineResources:
    """Built on first use from the environment (PipelineSettings: AUDIO_BUCKET, JOBS_TABLE,
    ...), then shared by every request of the process."""
    global _resources
    if _resources is None:
        from alertfusion import aws
        from alertfusion.jobs import JobStore
        from alertfusion.settings import pipeline_settings

        settings = pipeline_settings()
        ddb = aws.dynamodb()
        _resources = PipelineResources(
            settings=settings,
            store=JobStore(settings.jobs_table, ddb, ttl_days=settings.job_ttl_days),
            dynamodb=ddb,
        )
    return _resources


def reset_pipeline() -> None:
    """Forget the cached resources (tests, after changing the environment or moto)."""
    global _resources, _backfills
    _resources = None
    _backfills = None


PipelineDep = Annotated[PipelineResources, Depends(get_pipeline)]


def charge_quota(
    pipeline: PipelineResources,
    settings: ApiSettings,
    caller: Principal,
    kind: Literal["uploads", "predictions"],
) -> None:
    """Count one upload or prediction against a signed-in user's hourly and daily quota (429
    QUOTA_EXCEEDED past it). API keys are governed by API Gateway's usage plan instead."""
    if not caller.is_user:
        return
    from functions.api.quotas import QuotaLimits, QuotaStore

    limits = QuotaLimits(
        per_hour=getattr(settings, f"quota_{kind}_per_hour"),
        per_day=getattr(settings, f"quota_{kind}_per_day"),
    )
    QuotaStore(pipeline.settings.jobs_table, pipeline.dynamodb).take(caller.owner, kind, limits)


_backfills: BackfillService | None = None


def get_backfills() -> BackfillService:
    """Backfills of the pipeline's bucket (BACKFILL_STATE_MACHINE_ARN, BACKFILL_PREFIXES...),
    built on first use; the Step Functions client only then."""
    global _backfills
    if _backfills is None:
        from alertfusion import aws
        from alertfusion.backfill.plan import backfill_settings
        from alertfusion.backfill.service import BackfillService

        pipeline = get_pipeline()
        backfill_settings.cache_clear()
        _backfills = BackfillService(
            pipeline=pipeline.settings,
            settings=backfill_settings(),
            s3=pipeline.s3,
            sfn=aws.stepfunctions(),
            store=pipeline.store,
        )
    return _backfills


BackfillsDep = Annotated["BackfillService", Depends(get_backfills)]
