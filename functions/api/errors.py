"""The API's one error shape, ``{"error": {"code", "message", "request_id"}}``, and the one
exception handler that makes it (statuses from `alertfusion.errors.HTTP_STATUS`)."""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.requests import Request
from starlette.responses import JSONResponse

from alertfusion.errors import HTTP_STATUS, AlertFusionError, ReasonCode
from functions.api.log import logger

#: what a client sees for a server-side failure: the detail (paths, variable names,
#: library messages) goes to the log under the request id, not to the client
_PUBLIC_5XX: dict[ReasonCode, str] = {
    ReasonCode.BUNDLE_INVALID: "the model bundle is not usable; the service is not ready",
    ReasonCode.BUNDLE_NOT_FOUND: "the model bundle is missing; the service is not ready",
    ReasonCode.UPSTREAM_UNAVAILABLE: "a dependency (AWS) did not answer; retry later",
    ReasonCode.CONFIG_INVALID: "the service is misconfigured",
    ReasonCode.INTERNAL: "internal error",
}
#: routing statuses Starlette raises itself, and what they mean here
_ROUTING_CODES: dict[int, ReasonCode] = {
    404: ReasonCode.NOT_FOUND,
    405: ReasonCode.METHOD_NOT_ALLOWED,
    408: ReasonCode.REQUEST_TIMEOUT,
    413: ReasonCode.PAYLOAD_TOO_LARGE,
}
_MAX_VALIDATION_ITEMS = 5


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: ReasonCode = Field(..., description="stable, machine-readable reason")
    message: str = Field(..., description="what went wrong, for people")
    request_id: str = Field(..., description="quote it when reporting a problem")


class ErrorBody(BaseModel):
    """Every error response has this shape."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "UNSUPPORTED_FORMAT",
                        "message": "recording.wav is not a supported audio file (WAV, ...)",
                        "request_id": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                    }
                }
            ]
        },
    )

    error: ErrorDetail


def request_id_of(scope: Any) -> str:
    """The id `RequestContext` gave the request ("-" outside it)."""
    state = scope.get("state") if isinstance(scope, dict) else None
    return str((state or {}).get("request_id", "-"))


def error_response(
    code: ReasonCode,
    message: str,
    request_id: str,
    *,
    headers: dict[str, str] | None = None,
    status: int | None = None,
) -> JSONResponse:
    """The error shape with the status `HTTP_STATUS` gives `code` (or `status`)."""
    status = status or HTTP_STATUS.get(code, 500)
    if status >= 500:
        message = _PUBLIC_5XX.get(code, _PUBLIC_5XX[ReasonCode.INTERNAL])
    body = {"error": {"code": code.value, "message": message, "request_id": request_id}}
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:_MAX_VALIDATION_ITEMS]:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        where = ".".join(loc) or "request"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    extra = len(exc.errors()) - _MAX_VALIDATION_ITEMS
    if extra > 0:
        parts.append(f"(+{extra} more)")
    return "; ".join(parts) or "invalid request"


def body_too_large(max_bytes: int, declared: int | None = None) -> AlertFusionError:
    """PAYLOAD_TOO_LARGE, pointing to `POST /uploads`: `declared` is the Content-Length,
    None when reading the body went past `max_bytes`."""
    size = f"{declared} bytes" if declared is not None else f"more than {max_bytes} bytes"
    return AlertFusionError(
        f"the request body is {size}; this endpoint takes at most {max_bytes} bytes. "
        "Upload larger recordings with POST /uploads (a presigned POST straight to S3).",
        code=ReasonCode.PAYLOAD_TOO_LARGE,
    )


def as_domain_error(exc: Exception) -> tuple[ReasonCode, str, dict[str, str] | None]:
    """(code, message, headers) for any exception the app raises or Starlette raises."""
    if isinstance(exc, AlertFusionError):
        # e.g. WWW-Authenticate with a 401, Retry-After with a 429
        headers = exc.details.get("http_headers")
        return exc.code, exc.message, dict(headers) if isinstance(headers, dict) else None
    if isinstance(exc, RequestValidationError):
        return ReasonCode.INVALID_INPUT, _validation_message(exc), None
    if isinstance(exc, StarletteHTTPException):
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code in _ROUTING_CODES:
            return _ROUTING_CODES[exc.status_code], str(exc.detail), headers
        if 400 <= exc.status_code < 500:
            # e.g. a multipart body that does not parse
            return ReasonCode.INVALID_INPUT, str(exc.detail), headers
    return ReasonCode.INTERNAL, "internal error", None


async def handle_exception(request: Request, exc: Exception) -> JSONResponse:
    """The one exception handler (registered for domain, validation and routing errors;
    `RequestContext` calls it for anything else)."""
    limit = request.scope.get(MAX_BODY_SIZE_SCOPE_KEY)
    if isinstance(exc, StarletteHTTPException) and exc.status_code == 413 and limit is not None:
        # FastAPI's `max_body_size` stopped reading the body; the scope holds the limit it applied
        exc = body_too_large(int(limit))
    code, message, headers = as_domain_error(exc)
    request_id = request_id_of(request.scope)
    status = HTTP_STATUS.get(code, 500)
    if status >= 500:
        logger.error(
            "request failed",
            extra={"reason": code.value, "detail": message, "error_type": type(exc).__name__},
            exc_info=exc if code is ReasonCode.INTERNAL else None,
        )
    return error_response(code, message, request_id, headers=headers)


#: the OpenAPI description of error responses, per status the routes can answer
def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        401: "missing or wrong `x-api-key`, or (AUTH_MODE cognito/oidc) a missing or invalid "
        "bearer token (UNAUTHORIZED)",
        403: "a location the API may not read (FORBIDDEN_LOCATION)",
        404: "not found (NOT_FOUND, OBJECT_NOT_FOUND, JOB_NOT_FOUND, BACKFILL_NOT_FOUND)",
        413: "body above the limit: use POST /uploads (PAYLOAD_TOO_LARGE, FILE_TOO_LARGE)",
        429: "the caller's hourly or daily quota is used up; `Retry-After` says when the next "
        "window opens (QUOTA_EXCEEDED)",
        415: "not audio, judged from the bytes (UNSUPPORTED_FORMAT)",
        422: "invalid fields or unusable audio/text (INVALID_INPUT, EMPTY_AUDIO, "
        "DECODE_FAILED, TOO_SHORT, TOO_LONG, NOT_FINITE, TEXT_TOO_LONG), a `bundle` this "
        "deployment does not serve (UNKNOWN_BUNDLE); an Idempotency-Key "
        "used before with another request body (IDEMPOTENCY_CONFLICT)",
        500: "internal error (INTERNAL, CONFIG_INVALID)",
        503: "not ready or a dependency failed (BUNDLE_*, UPSTREAM_UNAVAILABLE)",
    }
    return {s: {"model": ErrorBody, "description": descriptions[s]} for s in statuses}
