"""Cached boto3 clients: created on first use (never at import), resettable for tests."""

from __future__ import annotations

import threading
from typing import Any

#: service name -> client; guarded so concurrent first uses build one client, not two
_clients: dict[str, Any] = {}
#: one session for every client: each boto3 Session parses botocore's endpoint and model
#: files again (~0.3 s per client on a cold start), a shared one does it once
_session: Any = None
_lock = threading.Lock()

_CONNECT_TIMEOUT_S = 2
_READ_TIMEOUT_S = 20
#: botocore's own retries, per service. Transcribe gets none: the adapter in
#: alertfusion.transcribe owns that retry policy (backoff + jitter, ConflictException
#: meaning "already started"), and two stacked retry loops would multiply the attempts.
_MAX_ATTEMPTS = {"transcribe": 1}
_DEFAULT_MAX_ATTEMPTS = 3


def client(service: str) -> Any:
    """The process-wide boto3 client for `service` (honours AWS_ENDPOINT_URL, AWS_REGION)."""
    found = _clients.get(service)
    if found is not None:
        return found
    global _session
    with _lock:
        found = _clients.get(service)
        if found is None:
            import boto3
            from botocore.config import Config

            if _session is None:
                _session = boto3.session.Session()

            config = Config(
                connect_timeout=_CONNECT_TIMEOUT_S,
                read_timeout=_READ_TIMEOUT_S,
                retries={
                    "mode": "standard",
                    "max_attempts": _MAX_ATTEMPTS.get(service, _DEFAULT_MAX_ATTEMPTS),
                },
            )
            found = _session.client(service, config=config)
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


def reset_clients(session: Any = None) -> None:
    """Forget every cached client (tests: after starting or stopping moto, or changing the
    environment). New clients come from `session` if given (tests reuse one to skip the
    model parsing), else from a fresh session built on first use."""
    global _session
    with _lock:
        _clients.clear()
        _session = session
