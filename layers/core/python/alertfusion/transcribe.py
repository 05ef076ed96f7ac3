"""Amazon Transcribe adapter: start (idempotent by job name), status, transcript parsing.

``StartTranscriptionJob`` with a name derived from the job id is the idempotency key: a
duplicate S3 event, a retried Lambda or a second stage that also tries can only get a
``ConflictException``, which means "already started". Throttling
(``LimitExceededException``) and transient failures are retried here with exponential
backoff and full jitter; the boto3 client for Transcribe has botocore's retries turned off
(alertfusion.aws) so that the two policies do not multiply.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, get_args

from alertfusion.aws import S3_NOT_FOUND_CODES, error_code
from alertfusion.errors import AlertFusionError, ReasonCode, TransientError
from alertfusion.keys import job_id_from_transcribe_job_name

#: Transcribe and generic AWS error codes a retry may fix
RETRYABLE_CODES = frozenset(
    {
        "LimitExceededException",
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "InternalFailureException",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
#: a Transcribe job's status once it ended; the only ones the classifier's rule passes on
TerminalStatus = Literal["COMPLETED", "FAILED"]
TERMINAL_STATUSES: tuple[TerminalStatus, ...] = get_args(TerminalStatus)
#: what EventBridge puts in the event a Transcribe job sends when its status changes
EVENT_SOURCE = "aws.transcribe"
EVENT_DETAIL_TYPE = "Transcribe Job State Change"
#: the recordings are Korean
DEFAULT_LANGUAGE = "ko-KR"
MAX_ATTEMPTS = 6
BASE_DELAY_S = 0.2
MAX_DELAY_S = 4.0


class TranscribeRequestError(AlertFusionError):
    """Transcribe refused the request itself (BadRequestException): retrying cannot help."""

    default_code = ReasonCode.TRANSCRIBE_FAILED


class TranscriptError(AlertFusionError):
    """The transcript file is missing or not Transcribe's JSON."""

    default_code = ReasonCode.TRANSCRIPT_INVALID


class StartOutcome(StrEnum):
    STARTED = "started"
    ALREADY_STARTED = "already_started"


@dataclass(frozen=True)
class TranscriptionJobInfo:
    name: str
    status: str  # QUEUED | IN_PROGRESS | COMPLETED | FAILED
    failure_reason: str | None = None
    transcript_uri: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


def _is_retryable(exc: Exception) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in RETRYABLE_CODES or int(status or 0) >= 500
    return isinstance(exc, BotoCoreError)  # connection errors, timeouts


def backoff_delay(attempt: int, *, rng: Callable[[], float] = random.random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(MAX, BASE * 2**attempt)]."""
    return rng() * min(MAX_DELAY_S, BASE_DELAY_S * (2**attempt))


def start_transcription(
    client: Any,
    *,
    job_name: str,
    media_uri: str,
    media_format: str | None,
    language: str,
    output_bucket: str,
    output_key: str,
    max_attempts: int = MAX_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = random.random,
) -> StartOutcome:
    """Start the Transcribe job `job_name` once; ConflictException = already started.

    Raises TranscribeRequestError when Transcribe refuses the request (e.g. a media format
    it cannot read) and TransientError when throttling or outages outlast the retries.
    """
    from botocore.exceptions import ClientError

    request: dict[str, Any] = {
        "TranscriptionJobName": job_name,
        "LanguageCode": language,
        "Media": {"MediaFileUri": media_uri},
        "OutputBucketName": output_bucket,
        "OutputKey": output_key,
    }
    if media_format:
        request["MediaFormat"] = media_format
    last: Exception | None = None
    for attempt in range(max_attempts):
        try:
            client.start_transcription_job(**request)
            return StartOutcome.STARTED
        except Exception as exc:
            code = error_code(exc)
            if code == "ConflictException":
                return StartOutcome.ALREADY_STARTED
            if isinstance(exc, ClientError) and code == "BadRequestException":
                raise TranscribeRequestError(
                    f"Transcribe refused job {job_name}: {exc.response['Error'].get('Message', '')}"
                ) from exc
            if not _is_retryable(exc):
                raise
            last = exc
            if attempt + 1 < max_attempts:
                sleep(backoff_delay(attempt, rng=rng))
    raise TransientError(
        f"StartTranscriptionJob {job_name}: still failing after {max_attempts} attempts "
        f"({error_code(last) if last else 'unknown'})",
        details={"attempts": max_attempts},
    ) from last


def get_transcription(client: Any, job_name: str) -> TranscriptionJobInfo | None:
    """The Transcribe job's status; None when Transcribe has no job of that name."""
    from botocore.exceptions import ClientError

    try:
        job = client.get_transcription_job(TranscriptionJobName=job_name)["TranscriptionJob"]
    except ClientError as exc:
        # Transcribe answers "The requested job couldn't be found" as a BadRequestException
        if error_code(exc) in ("BadRequestException", "NotFoundException"):
            return None
        if _is_retryable(exc):
            raise TransientError(f"GetTranscriptionJob {job_name}: {error_code(exc)}") from exc
        raise
    except Exception as exc:
        if _is_retryable(exc):
            raise TransientError(f"GetTranscriptionJob {job_name}: {type(exc).__name__}") from exc
        raise
    return TranscriptionJobInfo(
        name=job_name,
        status=str(job.get("TranscriptionJobStatus", "")),
        failure_reason=job.get("FailureReason"),
        transcript_uri=(job.get("Transcript") or {}).get("TranscriptFileUri"),
    )


def delete_transcription(client: Any, job_name: str) -> bool:
    """Delete the finished Transcribe job `job_name` (its record at Transcribe; the
    transcript file is the caller's to delete). False when Transcribe has no such job, or
    refuses because it is still running (Transcribe deletes only jobs in a terminal
    state: ask again once it finished)."""
    from botocore.exceptions import ClientError

    try:
        client.delete_transcription_job(TranscriptionJobName=job_name)
    except ClientError as exc:
        if error_code(exc) in ("BadRequestException", "NotFoundException"):
            return False
        if _is_retryable(exc):
            raise TransientError(f"DeleteTranscriptionJob {job_name}: {error_code(exc)}") from exc
        raise
    except Exception as exc:
        if _is_retryable(exc):
            raise TransientError(
                f"DeleteTranscriptionJob {job_name}: {type(exc).__name__}"
            ) from exc
        raise
    return True


def parse_transcript(raw: bytes | str) -> str:
    """The text of a Transcribe output file (``results.transcripts[*].transcript`` joined).

    An empty string is a valid answer (silence, screams); anything that is not Transcribe's
    JSON is a TranscriptError.
    """
    try:
        doc = json.loads(raw)
        parts = doc["results"]["transcripts"]
        texts = [part["transcript"] for part in parts]
    except (ValueError, KeyError, TypeError) as exc:
        raise TranscriptError(f"not a Transcribe output file: {type(exc).__name__}") from exc
    if not all(isinstance(t, str) for t in texts):
        raise TranscriptError("not a Transcribe output file: transcript is not text")
    return " ".join(t.strip() for t in texts if t.strip())


def read_transcript(s3: Any, bucket: str, key: str, *, max_bytes: int = 5 * 1024 * 1024) -> str:
    """Download and parse `key`; a missing, oversized or malformed file is a TranscriptError."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = error_code(exc)
        if code in S3_NOT_FOUND_CODES:
            raise TranscriptError(f"transcript file {key} does not exist") from exc
        if _is_retryable(exc):
            raise TransientError(f"GetObject {key}: {code}") from exc
        raise
    except BotoCoreError as exc:
        raise TransientError(f"GetObject {key}: {type(exc).__name__}") from exc
    if int(response.get("ContentLength") or 0) > max_bytes:
        raise TranscriptError(f"transcript file {key} is larger than {max_bytes} bytes")
    body = response["Body"]
    try:
        return parse_transcript(body.read())
    finally:
        body.close()


@dataclass(frozen=True)
class JobStateChange:
    """A "Transcribe Job State Change" event of this pipeline."""

    job_id: str
    job_name: str
    status: TerminalStatus
    failure_reason: str | None = None


def job_state_change_pattern(prefix: str) -> dict[str, Any]:
    """The EventBridge pattern of this pipeline's finished Transcribe jobs (names starting
    with `prefix`): the classifier's rule in AWS and in the local stack."""
    return {
        "source": [EVENT_SOURCE],
        "detail-type": [EVENT_DETAIL_TYPE],
        "detail": {
            "TranscriptionJobName": [{"prefix": prefix}],
            "TranscriptionJobStatus": list(TERMINAL_STATUSES),
        },
    }


def is_job_state_change(event: dict[str, Any]) -> bool:
    """Whether `event` is a Transcribe job's state-change event (of any job or status)."""
    return event.get("source") == EVENT_SOURCE and event.get("detail-type") == EVENT_DETAIL_TYPE


def parse_job_state_change(event: dict[str, Any], prefix: str) -> JobStateChange | None:
    """The job a Transcribe EventBridge event is about; None when it is not one of this
    pipeline's jobs or not a terminal status (the rule filters those too)."""
    if event.get("source") != EVENT_SOURCE:
        return None
    detail = event.get("detail") or {}
    name = detail.get("TranscriptionJobName")
    status = detail.get("TranscriptionJobStatus")
    if not isinstance(name, str) or status not in TERMINAL_STATUSES:
        return None
    job_id = job_id_from_transcribe_job_name(name, prefix)
    if job_id is None:
        return None
    reason = detail.get("FailureReason")
    return JobStateChange(
        job_id=job_id,
        job_name=name,
        status=status,
        failure_reason=reason if isinstance(reason, str) else None,
    )
