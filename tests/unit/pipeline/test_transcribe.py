"""The Transcribe adapter's rules: idempotent start, retry policy, transcript parsing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from alertfusion.errors import ReasonCode, TransientError
from alertfusion.transcribe import (
    BASE_DELAY_S,
    MAX_DELAY_S,
    StartOutcome,
    TranscribeRequestError,
    TranscriptError,
    backoff_delay,
    is_job_state_change,
    job_state_change_pattern,
    parse_job_state_change,
    parse_transcript,
    start_transcription,
)
from tests.conftest import FIXTURES

pytestmark = pytest.mark.unit

ARGS: dict[str, Any] = {
    "job_name": "alert-01JD7Q3K8W2S9V4M6T1R5Y0ZXB",
    "media_uri": "s3://bucket/uploads/01JD7Q3K8W2S9V4M6T1R5Y0ZXB.wav",
    "media_format": "wav",
    "language": "ko-KR",
    "output_bucket": "bucket",
    "output_key": "transcripts/01JD7Q3K8W2S9V4M6T1R5Y0ZXB.json",
}


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} message"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "StartTranscriptionJob",
    )


class ScriptedTranscribe:
    """Answers StartTranscriptionJob from a script of exceptions, then succeeds."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.requests: list[dict[str, Any]] = []

    def start_transcription_job(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        if self.failures:
            raise self.failures.pop(0)
        return {"TranscriptionJob": {"TranscriptionJobName": request["TranscriptionJobName"]}}


def test_start_sends_the_request_the_pipeline_needs() -> None:
    client = ScriptedTranscribe()
    assert start_transcription(client, **ARGS) is StartOutcome.STARTED
    (request,) = client.requests
    assert request == {
        "TranscriptionJobName": ARGS["job_name"],
        "LanguageCode": "ko-KR",
        "Media": {"MediaFileUri": ARGS["media_uri"]},
        "MediaFormat": "wav",
        "OutputBucketName": "bucket",
        "OutputKey": ARGS["output_key"],
    }
    start_transcription(client, **{**ARGS, "media_format": None})
    assert "MediaFormat" not in client.requests[-1]  # Transcribe detects it


def test_conflict_means_already_started() -> None:
    client = ScriptedTranscribe(client_error("ConflictException"))
    assert start_transcription(client, **ARGS) is StartOutcome.ALREADY_STARTED
    assert len(client.requests) == 1


@pytest.mark.parametrize(
    "failure",
    [
        client_error("LimitExceededException"),
        client_error("ThrottlingException"),
        client_error("InternalFailureException", 500),
        client_error("SomethingNew", 503),
        EndpointConnectionError(endpoint_url="https://transcribe.ap-northeast-2.amazonaws.com"),
    ],
    ids=["limit", "throttling", "internal", "5xx", "connection"],
)
def test_transient_failures_are_retried_with_jittered_backoff(failure: Exception) -> None:
    client = ScriptedTranscribe(failure, failure, failure)
    sleeps: list[float] = []
    outcome = start_transcription(client, **ARGS, sleep=sleeps.append, rng=lambda: 1.0)
    assert outcome is StartOutcome.STARTED and len(client.requests) == 4
    assert sleeps == [BASE_DELAY_S, 2 * BASE_DELAY_S, 4 * BASE_DELAY_S]


def test_a_retry_that_finds_the_job_started_is_fine() -> None:
    """The first call reached Transcribe but its answer was lost: the retry conflicts."""
    client = ScriptedTranscribe(
        client_error("LimitExceededException"), client_error("ConflictException")
    )
    assert (
        start_transcription(client, **ARGS, sleep=lambda _s: None) is StartOutcome.ALREADY_STARTED
    )


def test_retries_are_bounded() -> None:
    client = ScriptedTranscribe(*[client_error("LimitExceededException")] * 10)
    sleeps: list[float] = []
    with pytest.raises(TransientError) as err:
        start_transcription(client, **ARGS, max_attempts=4, sleep=sleeps.append)
    assert len(client.requests) == 4 and len(sleeps) == 3
    assert err.value.code is ReasonCode.UPSTREAM_UNAVAILABLE and not err.value.permanent


def test_bad_request_is_permanent() -> None:
    client = ScriptedTranscribe(client_error("BadRequestException"))
    with pytest.raises(TranscribeRequestError) as err:
        start_transcription(client, **ARGS, sleep=lambda _s: None)
    assert err.value.code is ReasonCode.TRANSCRIBE_FAILED and len(client.requests) == 1


def test_unexpected_errors_are_not_retried() -> None:
    client = ScriptedTranscribe(client_error("AccessDeniedException", 403))
    with pytest.raises(ClientError):
        start_transcription(client, **ARGS, sleep=lambda _s: None)
    assert len(client.requests) == 1


def test_backoff_is_full_jitter_and_capped() -> None:
    for attempt in range(12):
        cap = min(MAX_DELAY_S, BASE_DELAY_S * 2**attempt)
        assert backoff_delay(attempt, rng=lambda: 0.0) == 0.0
        assert backoff_delay(attempt, rng=lambda: 0.999) == pytest.approx(0.999 * cap)
    assert backoff_delay(30, rng=lambda: 1.0) == MAX_DELAY_S


def test_transcript_fixtures() -> None:
    ko = (FIXTURES / "transcribe" / "asr-output-ko.json").read_bytes()
    assert parse_transcript(ko) == "도와주세요. 여기 사람이 쓰러졌어요."
    empty = (FIXTURES / "transcribe" / "asr-output-empty.json").read_bytes()
    assert parse_transcript(empty) == ""


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[]",
        b'{"results": {}}',
        b'{"results": {"transcripts": [{"text": "x"}]}}',
        json.dumps({"results": {"transcripts": [{"transcript": 5}]}}).encode(),
    ],
)
def test_malformed_transcripts(raw: bytes) -> None:
    with pytest.raises(TranscriptError) as err:
        parse_transcript(raw)
    assert err.value.code is ReasonCode.TRANSCRIPT_INVALID


def test_job_state_change_events() -> None:
    completed = json.loads((FIXTURES / "events" / "transcribe-job-completed.json").read_text())
    change = parse_job_state_change(completed, "alert-")
    assert change is not None
    assert (change.job_id, change.status) == ("01JD7Q3K8W2S9V4M6T1R5Y0ZXB", "COMPLETED")
    failed = json.loads((FIXTURES / "events" / "transcribe-job-failed.json").read_text())
    failed["detail"]["FailureReason"] = "Unsupported media format"
    change = parse_job_state_change(failed, "alert-")
    assert change is not None and change.status == "FAILED"
    assert change.failure_reason == "Unsupported media format"
    assert parse_job_state_change(completed, "other-") is None
    running = {
        **completed,
        "detail": {**completed["detail"], "TranscriptionJobStatus": "IN_PROGRESS"},
    }
    assert parse_job_state_change(running, "alert-") is None
    assert parse_job_state_change({**completed, "source": "aws.s3"}, "alert-") is None


def _matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """EventBridge's matching, for what the rule's pattern uses (exact values, prefix)."""
    for key, allowed in pattern.items():
        value = event.get(key)
        if isinstance(allowed, dict):
            if not isinstance(value, dict) or not _matches(allowed, value):
                return False
        elif not any(
            isinstance(value, str) and value.startswith(a["prefix"])
            if isinstance(a, dict)
            else a == value
            for a in allowed
        ):
            return False
    return True


def test_the_rule_passes_exactly_the_events_the_classifier_finalises() -> None:
    """The classifier's rule (AWS and the local stack build it from one function) and the
    handler's parsing agree on which events are this pipeline's finished jobs."""
    completed = json.loads((FIXTURES / "events" / "transcribe-job-completed.json").read_text())
    failed = json.loads((FIXTURES / "events" / "transcribe-job-failed.json").read_text())
    detail = completed["detail"]
    events = [
        completed,
        failed,
        {**completed, "detail": {**detail, "TranscriptionJobStatus": "IN_PROGRESS"}},
        {
            **completed,
            "detail": {**detail, "TranscriptionJobName": "other-" + detail["TranscriptionJobName"]},
        },
        {**completed, "source": "aws.s3"},
    ]
    pattern = job_state_change_pattern("alert-")
    for event in events:
        assert is_job_state_change(event) == (event["source"] == "aws.transcribe")
        assert _matches(pattern, event) == (parse_job_state_change(event, "alert-") is not None)
    assert [_matches(pattern, e) for e in events] == [True, True, False, False, False]
