"""`GET /healthz` (the process answers; loads nothing) and `GET /readyz` (the model bundle
is loaded: it loads it on first call)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from alertfusion import __version__
from alertfusion.errors import AlertFusionError, ReasonCode
from functions.api.deps import ClassifierDep
from functions.api.errors import error_response, error_responses, request_id_of
from functions.api.log import logger
from functions.api.models import (
    BundleList,
    BundleView,
    Health,
    LabelView,
    Ready,
    SelfCheckSummary,
)

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness (no model load)")
async def healthz() -> Health:
    """The process is up. Open without an API key; never loads the models."""
    return Health(version=__version__)


@router.get(
    "/readyz",
    response_model=Ready,
    summary="Readiness (the model bundle is loaded)",
    responses={503: error_responses(503)[503]},
)
def readyz(request: Request, classifier: ClassifierDep) -> Ready | JSONResponse:
    """200 once the bundle is loaded and its self-check passed on this CPU (the first call
    loads it, which takes seconds on a cold start); 503 with the reason code
    (BUNDLE_NOT_FOUND, BUNDLE_INVALID, CONFIG_INVALID, SELFCHECK_FAILED...) when it cannot
    serve. Open without an API key, like /healthz."""
    try:
        engine = classifier()
        if not engine.loaded:
            engine.warm_up()
        spec = engine.spec
        readiness = engine.readiness
        if readiness is not None and not readiness.serving:
            raise AlertFusionError(readiness.detail, code=ReasonCode.SELFCHECK_FAILED)
    except AlertFusionError as exc:
        logger.warning("not ready", extra={"reason": exc.code.value, "detail": exc.message})
        return error_response(exc.code, exc.message, request_id_of(request.scope), status=503)
    fallback = list(readiness.fallback) if readiness is not None else []
    check = readiness.check if readiness is not None else None
    recipe = spec.recipe
    return Ready(
        bundle_version=spec.bundle_version,
        trained=spec.trained,
        gate="binary" if recipe.decision.gate is not None else "none",
        recipe=recipe.name,
        labels=[LabelView(name=label.name, display=label.shown) for label in recipe.labels],
        alert_labels=list(recipe.decision.alert_labels),
        quantization={
            name: "none" if name in fallback else model.quantization
            for name, model in spec.models.items()
        },
        selfcheck=SelfCheckSummary(
            status=readiness.status,
            cpu=check.cpu.describe() if check is not None else None,
            fallback=fallback,
            ms=round(check.ms, 1) if check is not None else None,
        )
        if readiness is not None
        else None,
    )


@router.get(
    "/bundles",
    response_model=BundleList,
    summary="The model bundles served here, with their labels",
    responses=error_responses(500, 503),
)
def bundles() -> BundleList:
    """Every bundle a request may name in `bundle` (`/predict`, `/uploads`), read from the
    manifests alone (no model is loaded): its recipe, its labels and their display names, its
    alert labels, whether it has a text model and where its transcript comes from. Open
    without an API key, like /readyz."""
    from alertfusion.catalog import DEFAULT_BUNDLE, describe_all

    return BundleList(
        bundles=[
            BundleView(
                name=info.name,
                default=info.name == DEFAULT_BUNDLE,
                bundle_version=info.bundle_version,
                recipe=info.recipe,
                trained=info.trained,
                labels=[LabelView(name=x.name, display=x.display) for x in info.labels],
                alert_labels=list(info.alert_labels),
                aggregate=info.aggregate,
                has_text_model=info.has_text_model,
                display_names=dict(info.display_names),
                transcript_source=info.transcript_source,
            )
            for info in describe_all()
        ]
    )
