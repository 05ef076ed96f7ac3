"""Dependencies of the routes (`Depends`, so tests override them): settings, the API key
check, the engine (loaded lazily, only by the classifying routes) and the AWS resources."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from alertfusion.errors import AlertFusionError, ReasonCode
from alertfusion.protocols import Classifier
from functions.api.settings import ApiSettings

if TYPE_CHECKING:
    from alertfusion.backfill.service import BackfillService
    from alertfusion.jobs import JobStore
    from alertfusion.settings import PipelineSettings


#: returns the (cached) engine, loading the bundle on first use; raises BundleError or
#: ConfigError when it cannot
ClassifierProvider = Callable[[], Classifier]


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


def _load_engine() -> Classifier:
    # the only place the API imports the engine (and with it numpy, onnxruntime, ...)
    from alertfusion.engine import get_engine

    engine: Classifier = get_engine()
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
