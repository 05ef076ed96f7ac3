"""The HTTP API: `create_app()`, the ASGI `app` (uvicorn on EC2/local) and the Lambda
`handler` (Mangum, for API Gateway REST v1 and HTTP v2 events).

Importing this module loads no model and imports neither numpy nor onnxruntime: the
classifying routes import the engine on their first request (`deps._load_engine`), unless
the stack asks for it during init (SnapStart, provisioned concurrency: ALERTFUSION_WARM_ON_INIT,
alertfusion.runtime_hooks).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from mangum import Mangum
from starlette.exceptions import HTTPException as StarletteHTTPException

from alertfusion import __version__
from alertfusion.errors import AlertFusionError
from alertfusion.runtime_hooks import prepare_sandbox
from functions.api.deps import get_classifier_provider
from functions.api.errors import handle_exception
from functions.api.middleware import BodyTimeout, ContentLengthLimit, RequestContext, StagePrefix
from functions.api.routers import backfills, health, jobs, page, predict, signin, uploads
from functions.api.settings import ApiSettings, api_settings

DESCRIPTION = """\
Tells, from a short Korean recording, whether someone is in an emergency (help, robbery,
sexual assault, theft, violence) or not (regular).

* Synchronous: `POST /predict` (multipart: `audio_file` + `text_input`) and
  `POST /predict_s3` (an object of the pipeline's bucket) answer the verdict; the original
  server's paths `POST /s3predict` and `POST /s3predict-label6` (every model, no gate) are
  kept as legacy aliases.
* Asynchronous: `POST /uploads` gives a presigned POST to upload the recording straight
  to S3; `GET /jobs/{job_id}` answers the preliminary (audio-only) and final verdicts;
  `DELETE /jobs/{job_id}` deletes the recording, transcript and result.
* Access: `x-api-key`, or (AUTH_MODE cognito/oidc) a signed-in user's bearer token; a job
  is its creator's (anyone else: 404), and users have hourly and daily quotas (429).
* Backfills: `POST /backfills` classifies every recording under a prefix of the bucket
  (Step Functions Distributed Map; `dry_run` estimates first); `GET /backfills/{id}`.

Errors always have the shape `{"error": {"code", "message", "request_id"}}`; `code` is a
stable reason code.
"""


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """The FastAPI app (settings from the environment unless given)."""
    settings = settings or api_settings()
    app = FastAPI(
        title="alertfusion",
        version=__version__,
        description=DESCRIPTION,
        # the interactive docs load scripts from a CDN; the schema is enough offline
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    for exc_class in (AlertFusionError, RequestValidationError, StarletteHTTPException):
        app.add_exception_handler(exc_class, handle_exception)
    # FastAPI's body limit on every route rather than on the app: the app-level one sits
    # outside the middleware below and turns any answer to a request declaring a larger
    # Content-Length (ContentLengthLimit's 413 included) into its own plain-text 413
    for module in (health, predict, uploads, jobs, backfills, signin, page):
        app.include_router(module.router, max_body_size=settings.max_body_bytes)
    # added innermost first: RequestContext wraps everything
    app.add_middleware(
        BodyTimeout, total_s=settings.body_timeout_seconds, idle_s=settings.body_idle_seconds
    )
    app.add_middleware(ContentLengthLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allow_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=[
                "authorization",
                "content-type",
                "x-api-key",
                "idempotency-key",
                "x-request-id",
            ],
            expose_headers=["retry-after", "x-request-id", "location"],
            max_age=600,
        )
    app.add_middleware(StagePrefix)
    app.add_middleware(RequestContext)
    return app


app = create_app()
handler = Mangum(app, lifespan="off")
prepare_sandbox(get_classifier_provider())
