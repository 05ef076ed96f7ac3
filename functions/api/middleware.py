"""Pure ASGI middleware: request ids and the catch-all error, the API Gateway stage prefix,
the declared body size, and the time a body may take to arrive."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any
from urllib.parse import unquote

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from functions.api.errors import body_too_large, error_response, handle_exception, request_id_of
from functions.api.log import logger

#: a client's own X-Request-Id is kept only when it is this harmless
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _event(scope: Scope) -> dict[str, Any] | None:
    """The API Gateway event Mangum put into the scope (None under uvicorn)."""
    event = scope.get("aws.event")
    return event if isinstance(event, dict) else None


class RequestContext:
    """Gives every request an id (API Gateway's request id when the event carries one,
    else the client's X-Request-Id if it looks like an id, else a new UUID), echoes it in
    ``x-request-id``, logs one access line, and turns anything unexpected into the error
    shape (500 INTERNAL) instead of a bare traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self._request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if status:
                # the response has started: nothing better to send than what went out
                logger.exception("request failed after the response started")
                return
            response = await handle_exception(Request(scope), exc)
            await response(scope, receive, send_with_id)
        finally:
            logger.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )

    @staticmethod
    def _request_id(scope: Scope) -> str:
        event = _event(scope)
        if event is not None:
            found = (event.get("requestContext") or {}).get("requestId")
            if isinstance(found, str) and found:
                return found
        given = _header(scope, b"x-request-id")
        if given and _CLIENT_REQUEST_ID.fullmatch(given):
            return given
        return str(uuid.uuid4())


def stage_root_path(event: dict[str, Any], path: str) -> tuple[str, str]:
    """(root_path, path) for a request Mangum built from an API Gateway event.

    REST API (v1): ``path`` is the path below the stage ("/predict") and
    ``requestContext.path`` what the client asked for ("/prod/predict"): the difference is
    the stage (or a custom domain's base path). HTTP API (v2) with a named stage: the path
    starts with "/{stage}". Returns the ASGI root_path and the full path (ASGI's path
    includes the root_path), so that routing sees "/predict" and generated URLs (the poll
    URL, the page's links) carry the prefix the client used.
    """
    context = event.get("requestContext") or {}
    if event.get("version") == "2.0":
        stage = context.get("stage")
        if isinstance(stage, str) and stage and stage != "$default":
            prefix = f"/{stage}"
            if path == prefix or path.startswith(prefix + "/"):
                return prefix, path
        return "", path
    outer = context.get("path")
    if not isinstance(outer, str) or not outer:
        return "", path
    outer = unquote(outer)
    inner = path if path != "/" else ""
    if outer != inner and outer.endswith(inner) and outer.startswith("/"):
        root = outer[: len(outer) - len(inner)].rstrip("/")
        return root, root + path
    return "", path


class StagePrefix:
    """Sets the ASGI root_path from the API Gateway event (see `stage_root_path`); Mangum
    itself leaves it empty, and its `api_gateway_base_path` would need the stage name in
    the configuration."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        event = _event(scope) if scope["type"] == "http" else None
        if event is not None and not scope.get("root_path"):
            root, full = stage_root_path(event, scope["path"])
            if root:
                scope = {**scope, "root_path": root, "path": full}
        await self.app(scope, receive, send)


def _declared_length(scope: Scope) -> int | None:
    """The Content-Length, read as Starlette's body limit reads it (None if absent or not
    a number)."""
    value = _header(scope, b"content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class ContentLengthLimit:
    """Answers 413 PAYLOAD_TOO_LARGE, in the error shape, to a request whose Content-Length
    is above `max_bytes`, before the app runs or anything is read. The limit while reading
    (an absent or lying Content-Length) is FastAPI's `max_body_size`, which `create_app`
    sets on every route; this check stays because FastAPI's answer to a declared size above
    the limit is a plain-text 413 it sends itself, past the exception handlers."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = _declared_length(scope) if scope["type"] == "http" else None
        if declared is not None and declared > self.max_bytes:
            error = body_too_large(self.max_bytes, declared)
            response = error_response(error.code, error.message, request_id_of(scope))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class BodyTimeout:
    """Answers 408 REQUEST_TIMEOUT, in the error shape, when a request's body has not
    arrived `total_s` after the request started, or no part of it came for `idle_s`: a
    stalled upload must not hold a worker and a connection (uvicorn waits for ever). Behind
    API Gateway the body comes whole with the event, so this never fires there. Once the
    body is complete, `receive` is the server's again (waiting for a disconnect is not a
    stalled body)."""

    def __init__(self, app: ASGIApp, *, total_s: float, idle_s: float) -> None:
        self.app = app
        self.total_s = total_s
        self.idle_s = idle_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.total_s
        complete = False

        async def timed_receive() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            wait = min(self.idle_s, deadline - loop.time())
            try:
                message = await asyncio.wait_for(receive(), timeout=max(wait, 0.0))
            except TimeoutError:
                # the rest of the body may still come: the connection cannot be reused
                raise StarletteHTTPException(
                    408,
                    f"the request body did not arrive in time (at most {self.total_s:g} s, "
                    f"no pause over {self.idle_s:g} s)",
                    headers={"connection": "close"},
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        await self.app(scope, timed_receive, send)
