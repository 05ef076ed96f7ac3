"""Typed domain errors with stable reason codes, and the one table that maps them to HTTP."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ReasonCode(StrEnum):
    """Stable, machine-readable reasons. Clients and job records rely on these strings."""

    # audio input
    EMPTY_AUDIO = "EMPTY_AUDIO"
    UNSUPPORTED_FORMAT = "UNSUPPORTED_FORMAT"
    DECODE_FAILED = "DECODE_FAILED"
    TOO_SHORT = "TOO_SHORT"
    TOO_LONG = "TOO_LONG"
    NOT_FINITE = "NOT_FINITE"
    FILE_TOO_LARGE = "FILE_TOO_LARGE"
    # text input
    TEXT_TOO_LONG = "TEXT_TOO_LONG"
    # model bundle
    BUNDLE_INVALID = "BUNDLE_INVALID"
    #: the bundle's models disagree with their fp32 answers on this CPU (alertfusion.selfcheck)
    SELFCHECK_FAILED = "SELFCHECK_FAILED"
    BUNDLE_NOT_FOUND = "BUNDLE_NOT_FOUND"
    #: a request or job names a model bundle this deployment does not serve
    UNKNOWN_BUNDLE = "UNKNOWN_BUNDLE"
    # requests
    INVALID_INPUT = "INVALID_INPUT"
    #: the request is not HTTP the server can read (a bad Content-Length, a bare CR...)
    MALFORMED_REQUEST = "MALFORMED_REQUEST"
    #: the request's headers or body did not arrive in time
    REQUEST_TIMEOUT = "REQUEST_TIMEOUT"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNAUTHORIZED = "UNAUTHORIZED"
    NOT_FOUND = "NOT_FOUND"
    #: the route exists, not for this HTTP method
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    OBJECT_NOT_FOUND = "OBJECT_NOT_FOUND"
    #: another object landed under a job's key after the job took its recording: the job
    #: never takes those bytes (see alertfusion.pipeline.starter)
    OBJECT_REPLACED = "OBJECT_REPLACED"
    FORBIDDEN_LOCATION = "FORBIDDEN_LOCATION"
    JOB_NOT_FOUND = "JOB_NOT_FOUND"
    BACKFILL_NOT_FOUND = "BACKFILL_NOT_FOUND"
    #: an Idempotency-Key used before with another request body
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
    #: the caller used up an hourly or daily quota (uploads, synchronous predictions)
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    # pipeline
    TRANSCRIBE_FAILED = "TRANSCRIBE_FAILED"
    #: not a failure: why a final verdict is audio-only when Transcribe was deliberately not
    #: run (TRANSCRIBE_POLICY=gated and the audio verdict is regular, or the recipe has no
    #: text model)
    TRANSCRIBE_SKIPPED = "TRANSCRIBE_SKIPPED"
    TRANSCRIPT_EMPTY = "TRANSCRIPT_EMPTY"
    TRANSCRIPT_INVALID = "TRANSCRIPT_INVALID"
    TIMEOUT = "TIMEOUT"
    INVALID_TRANSITION = "INVALID_TRANSITION"
    # configuration / dependencies
    CONFIG_INVALID = "CONFIG_INVALID"
    UPSTREAM_UNAVAILABLE = "UPSTREAM_UNAVAILABLE"
    INTERNAL = "INTERNAL"


# The one place that maps reason codes to HTTP statuses. Anything not listed is a 500.
HTTP_STATUS: dict[ReasonCode, int] = {
    ReasonCode.EMPTY_AUDIO: 422,
    ReasonCode.UNSUPPORTED_FORMAT: 415,
    ReasonCode.DECODE_FAILED: 422,
    ReasonCode.TOO_SHORT: 422,
    ReasonCode.TOO_LONG: 422,
    ReasonCode.NOT_FINITE: 422,
    ReasonCode.FILE_TOO_LARGE: 413,
    ReasonCode.TEXT_TOO_LONG: 422,
    ReasonCode.INVALID_INPUT: 422,
    ReasonCode.MALFORMED_REQUEST: 400,
    ReasonCode.REQUEST_TIMEOUT: 408,
    ReasonCode.PAYLOAD_TOO_LARGE: 413,
    ReasonCode.UNAUTHORIZED: 401,
    ReasonCode.NOT_FOUND: 404,
    ReasonCode.METHOD_NOT_ALLOWED: 405,
    ReasonCode.OBJECT_NOT_FOUND: 404,
    ReasonCode.OBJECT_REPLACED: 409,
    ReasonCode.FORBIDDEN_LOCATION: 403,
    ReasonCode.JOB_NOT_FOUND: 404,
    ReasonCode.BACKFILL_NOT_FOUND: 404,
    # 422, not 409, as the Idempotency-Key draft (IETF httpapi) answers a key reused with
    # another body; its 409 is for a retry while the first request is still in flight
    ReasonCode.IDEMPOTENCY_CONFLICT: 422,
    ReasonCode.QUOTA_EXCEEDED: 429,
    ReasonCode.UNKNOWN_BUNDLE: 422,
    ReasonCode.BUNDLE_INVALID: 503,
    ReasonCode.SELFCHECK_FAILED: 503,
    ReasonCode.BUNDLE_NOT_FOUND: 503,
    ReasonCode.UPSTREAM_UNAVAILABLE: 503,
    ReasonCode.CONFIG_INVALID: 500,
    ReasonCode.INTERNAL: 500,
}

# Reasons caused by the input itself: retrying the same input can never succeed, so a
# pipeline job that hits one ends FAILED instead of being retried.
PERMANENT_INPUT_REASONS: frozenset[ReasonCode] = frozenset(
    {
        ReasonCode.EMPTY_AUDIO,
        ReasonCode.UNSUPPORTED_FORMAT,
        ReasonCode.DECODE_FAILED,
        ReasonCode.TOO_SHORT,
        ReasonCode.TOO_LONG,
        ReasonCode.NOT_FINITE,
        ReasonCode.FILE_TOO_LARGE,
        ReasonCode.TEXT_TOO_LONG,
        ReasonCode.INVALID_INPUT,
        ReasonCode.OBJECT_NOT_FOUND,
        ReasonCode.OBJECT_REPLACED,
        ReasonCode.UNKNOWN_BUNDLE,
    }
)


class AlertFusionError(Exception):
    """Base of every domain failure: a stable `code`, a human `message`, optional `details`."""

    default_code: ReasonCode = ReasonCode.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        code: ReasonCode | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code: ReasonCode = code or self.default_code
        self.message = message
        self.details: dict[str, Any] = details or {}

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)

    @property
    def permanent(self) -> bool:
        """True when retrying with the same input cannot succeed."""
        return self.code in PERMANENT_INPUT_REASONS

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class AudioError(AlertFusionError):
    """The audio cannot be used (empty, undecodable, out of bounds, not finite...)."""

    default_code = ReasonCode.DECODE_FAILED


class TextError(AlertFusionError):
    default_code = ReasonCode.INVALID_INPUT


class BundleError(AlertFusionError):
    """The model bundle is missing, incomplete, or its files do not match their sums."""

    default_code = ReasonCode.BUNDLE_INVALID


class InputError(AlertFusionError):
    default_code = ReasonCode.INVALID_INPUT


class NotFoundError(AlertFusionError):
    default_code = ReasonCode.NOT_FOUND


class ConfigError(AlertFusionError):
    default_code = ReasonCode.CONFIG_INVALID


class TransientError(AlertFusionError):
    """A dependency failed in a way a retry may fix (throttling, timeouts, 5xx)."""

    default_code = ReasonCode.UPSTREAM_UNAVAILABLE


class JobStateError(AlertFusionError):
    """A job transition that would move backwards or from a final state."""

    default_code = ReasonCode.INVALID_TRANSITION
