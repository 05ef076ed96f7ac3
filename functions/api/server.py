"""The API under uvicorn (the EC2 fallback, `make serve`): HTTP that cannot be read and
requests whose headers stall get the API's JSON error shape, not uvicorn's plain text.

    python -m uvicorn functions.api.app:app --http functions.api.server:ApiH11Protocol

Behind API Gateway none of this applies (the gateway parses HTTP and hands the function a
whole request). The body's own deadline is the app's (functions.api.middleware.BodyTimeout).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from alertfusion.errors import HTTP_STATUS, ReasonCode

#: the request line and headers must have arrived this long after the first byte (or the
#: connection): a client that sends them slowly must not hold a connection for ever
HEADER_TIMEOUT_SECONDS = 10.0
#: uvicorn's idle keep-alive, stated here so that the fallback's command line and `make
#: serve` agree
KEEP_ALIVE_SECONDS = 5


def error_bytes(code: ReasonCode, message: str) -> bytes:
    """A whole HTTP/1.1 response in the API's error shape, closing the connection (written
    raw: the parser's state machine may be in any state when it is needed)."""
    status = HTTP_STATUS[code]
    body = json.dumps(
        {"error": {"code": code.value, "message": message, "request_id": str(uuid.uuid4())}}
    ).encode()
    reason = {400: b"Bad Request", 408: b"Request Timeout"}.get(status, b"Error")
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n" % (status, reason, len(body))
    )
    return head + body


class ApiH11Protocol(H11Protocol):
    """uvicorn's h11 protocol: malformed HTTP answers 400 MALFORMED_REQUEST and headers
    that do not arrive within `header_timeout_s` answer 408 REQUEST_TIMEOUT, both in the
    API's error shape."""

    header_timeout_s: float = HEADER_TIMEOUT_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle:  # the request line and headers are complete
            self._cancel_header_timer()
        elif self._header_timer is None and (cycle is None or cycle.response_complete):
            self._arm_header_timer()  # the first bytes of the next request on the connection

    def send_400_response(self, msg: str) -> None:
        self._cancel_header_timer()
        detail = f"the request is not HTTP this server can read ({msg.rstrip('.')})"
        self.transport.write(error_bytes(ReasonCode.MALFORMED_REQUEST, detail))
        self.transport.close()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or (self.cycle and not self.cycle.response_complete):
            return
        message = f"the request headers did not arrive within {self.header_timeout_s:g} s"
        self.transport.write(error_bytes(ReasonCode.REQUEST_TIMEOUT, message))
        self.transport.close()


def uvicorn_options(*, header_timeout_seconds: float | None = None) -> dict[str, Any]:
    """The uvicorn settings the API runs with (`uvicorn.Config(app, **uvicorn_options())`)."""
    protocol: type[ApiH11Protocol] = ApiH11Protocol
    if header_timeout_seconds is not None:
        protocol = type(
            "ApiH11Protocol", (ApiH11Protocol,), {"header_timeout_s": header_timeout_seconds}
        )
    return {"http": protocol, "timeout_keep_alive": KEEP_ALIVE_SECONDS}
