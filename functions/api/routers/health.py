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
from functions.api.models import Health, Ready, SelfCheckSummary

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
        manifest = engine.manifest
        readiness = engine.readiness
        if readiness is not None and not readiness.serving:
            raise AlertFusionError(readiness.detail, code=ReasonCode.SELFCHECK_FAILED)
    except AlertFusionError as exc:
        logger.warning("not ready", extra={"reason": exc.code.value, "detail": exc.message})
        return error_response(exc.code, exc.message, request_id_of(request.scope), status=503)
    fallback = list(readiness.fallback) if readiness is not None else []
    check = readiness.check if readiness is not None else None
    return Ready(
        bundle_version=manifest.bundle_version,
        trained=manifest.trained,
        gate=manifest.fusion.gate,
        quantization={
            name: "none" if name in fallback else model.quantization
            for name, model in manifest.models
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
