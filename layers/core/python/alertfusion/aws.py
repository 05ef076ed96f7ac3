"""Cached AWS clients: created on first use (never at import), resettable for tests; and
what their errors' codes mean.

The clients come from a botocore session, not a boto3 one: they are the same low-level
clients, but importing boto3 also imports s3transfer (a cold start pays for it), and the
runtime uses none of boto3's additions (resources, managed transfers)."""

from __future__ import annotations

import threading
from typing import Any

#: service name -> client; guarded so concurrent first uses build one client, not two
_clients: dict[str, Any] = {}
#: one session for every client: each session parses botocore's endpoint and model files
#: again, a shared one does it once
_session: Any = None
_lock = threading.Lock()

#: every service the code makes clients for. The image ships botocore's models for these
#: only (functions/slim_botocore.py keeps a superset; a test checks it).
SERVICES = ("dynamodb", "events", "s3", "sqs", "stepfunctions", "transcribe")

_CONNECT_TIMEOUT_S = 2
_READ_TIMEOUT_S = 20
#: botocore's own retries, per service. Transcribe gets none: the adapter in
#: alertfusion.transcribe owns that retry policy (backoff + jitter, ConflictException
#: meaning "already started"), and two stacked retry loops would multiply the attempts.
_MAX_ATTEMPTS = {"transcribe": 1}
_DEFAULT_MAX_ATTEMPTS = 3

#: S3 error codes for "no such object (or version)"; a HEAD request's error has no body, so
#: botocore names it by its HTTP status
S3_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "NotFound", "404"})
#: S3 error codes for "the object is not the one asked for" (If-Match on another ETag)
S3_CHANGED_CODES = frozenset({"PreconditionFailed", "412"})
#: S3 error codes for "not allowed"; without s3:ListBucket S3 answers a missing key so too
S3_DENIED_CODES = frozenset({"AccessDenied", "Forbidden", "403"})


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError (``Error.Code``); None for other errors."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def if_match(etag: str | None) -> dict[str, str]:
    """The ``IfMatch`` argument of an S3 read pinned to `etag` (stored without quotes), or
    nothing without one: S3 then answers PreconditionFailed when the key holds other bytes."""
    if not etag:
        return {}
    bare = etag.strip('"')
    return {"IfMatch": f'"{bare}"'}


def client(service: str) -> Any:
    """The process-wide client for `service` (honours AWS_ENDPOINT_URL, AWS_REGION)."""
    found = _clients.get(service)
    if found is not None:
        return found
    if service not in SERVICES:
        raise ValueError(f"no client for {service!r}: add it to alertfusion.aws.SERVICES")
    global _session
    with _lock:
        found = _clients.get(service)
        if found is None:
            import botocore.session
            from botocore.config import Config

            if _session is None:
                _session = botocore.session.get_session()

            config = Config(
                connect_timeout=_CONNECT_TIMEOUT_S,
                read_timeout=_READ_TIMEOUT_S,
                retries={
                    "mode": "standard",
                    "max_attempts": _MAX_ATTEMPTS.get(service, _DEFAULT_MAX_ATTEMPTS),
                },
            )
            found = _session.create_client(service, config=config)
            _clients[service] = found
    return found


def s3() -> Any:
    return client("s3")


def dynamodb() -> Any:
    return client("dynamodb")


def transcribe() -> Any:
    return client("transcribe")


def events() -> Any:
    return client("events")


def sqs() -> Any:
    return client("sqs")


def stepfunctions() -> Any:
    return client("stepfunctions")


def reset_clients(session: Any = None) -> None:
    """Forget every cached client (tests: after starting or stopping moto, or changing the
    environment). New clients come from `session` if given (a botocore session: tests reuse
    one to skip the model parsing), else from a fresh session built on first use."""
    global _session
    with _lock:
        _clients.clear()
        _session = session
