"""`GET /healthz` (the process answers; loads nothing) and `GET /readyz` (the model bundle
is loaded: it loads it on first call)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from alertfusion import __version__
from alertfusion.errors import AlertFusionError
from functions.api.deps import ClassifierDep
from functions.api.errors import error_response, error_responses, request_id_of
from functions.api.log import logger
from functions.api.models import Health, Ready

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
    """200 once the bundle is loaded (the first call loads it, which takes seconds on a
    cold start); 503 with the reason code (BUNDLE_NOT_FOUND, BUNDLE_INVALID,
    CONFIG_INVALID...) when it cannot be. Open without an API key, like /healthz."""
    try:
        engine = classifier()
        if not engine.loaded:
            engine.warm_up()
        manifest = engine.manifest
    except AlertFusionError as exc:
        logger.warning("not ready", extra={"reason": exc.code.value, "detail": exc.message})
        return error_response(exc.code, exc.message, request_id_of(request.scope), status=503)
    models = manifest.models
    return Ready(
        bundle_version=manifest.bundle_version,
        trained=manifest.trained,
        gate=manifest.fusion.gate,
        quantization={
            "audio_binary": models.audio_binary.quantization,
            "audio_multiclass": models.audio_multiclass.quantization,
            "text": models.text.quantization,
        },
    )
