"""Uploads the starter refuses: the job ends FAILED with a precise reason, and nothing is
started (no Transcribe job, no work-queue task)."""

from __future__ import annotations

import pytest

from alertfusion.errors import ReasonCode
from alertfusion.jobs import JobStatus
from alertfusion.keys import new_job_id
from tests.conftest import FIXTURES, SAMPLES
from tests.integration.conftest import AwsEnv, configure

pytestmark = pytest.mark.integration

HELP_WAV = (SAMPLES / "ko-help-16k.wav").read_bytes()
LONG_WAV = (SAMPLES / "ko-violence-long-16k.wav").read_bytes()
SHORT_WAV = (FIXTURES / "audio" / "short-0.3s.wav").read_bytes()
PNG = b"\x89PNG\r\n\x1a\n" + bytes(2000)


def assert_refused(aws: AwsEnv, key: str, reason: ReasonCode) -> str:
    (out,) = aws.run_starter(aws.upload_event(key))["records"]
    assert (out["action"], out["reason"]) == ("rejected", reason.value)
    job = aws.job(out["job_id"])
    assert job.status is JobStatus.FAILED and job.failure_reason is reason
    assert job.failure_detail and job.failed_at is not None
    assert aws.transcribe_jobs() == []
    assert aws.queued_tasks() == []
    # a redelivered event changes nothing
    (again,) = aws.run_starter(aws.upload_event(key))["records"]
    assert again["action"] == "duplicate"
    assert aws.job(out["job_id"]).failure_reason is reason
    return str(out["job_id"])


@pytest.mark.parametrize(
    ("name", "data", "content_type"),
    [
        ("notes.txt", b"hello\n", "text/plain"),
        ("photo.wav", PNG, "audio/wav"),  # the name says WAV, the bytes are a PNG
        ("speech.wav", HELP_WAV, "text/plain"),  # WAV bytes stored as text
        ("noext", HELP_WAV, "audio/wav"),
    ],
    ids=["text-file", "png-named-wav", "text-content-type", "no-extension"],
)
def test_non_audio_objects(aws: AwsEnv, name: str, data: bytes, content_type: str) -> None:
    key = f"uploads/{name}"
    aws.put(key, data, content_type=content_type)
    assert_refused(aws, key, ReasonCode.UNSUPPORTED_FORMAT)


def test_the_short_fixture_is_too_short(aws: AwsEnv) -> None:
    key = f"uploads/{new_job_id()}.wav"
    aws.put(key, SHORT_WAV)
    job_id = assert_refused(aws, key, ReasonCode.TOO_SHORT)
    assert "0.30 s" in (aws.job(job_id).failure_detail or "")


def test_empty_object(aws: AwsEnv) -> None:
    key = f"uploads/{new_job_id()}.m4a"
    aws.put(key, b"", content_type="audio/mp4")
    assert_refused(aws, key, ReasonCode.EMPTY_AUDIO)


def test_oversized_file(aws: AwsEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, MAX_UPLOAD_BYTES="100000")
    key = f"uploads/{new_job_id()}.wav"
    aws.put(key, HELP_WAV)  # 168 kB
    assert_refused(aws, key, ReasonCode.FILE_TOO_LARGE)


def test_too_long(aws: AwsEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, MAX_AUDIO_SECONDS="20")
    key = f"uploads/{new_job_id()}.wav"
    aws.put(key, LONG_WAV)  # 25 s
    assert_refused(aws, key, ReasonCode.TOO_LONG)


def test_object_deleted_before_the_starter_ran(aws: AwsEnv) -> None:
    key = f"uploads/{new_job_id()}.wav"
    aws.put(key, HELP_WAV)
    event = aws.upload_event(key)
    aws.s3.delete_object(Bucket="alertfusion-test-audio", Key=key)
    (out,) = aws.run_starter(event)["records"]
    assert (out["action"], out["reason"]) == ("rejected", "OBJECT_NOT_FOUND")
    assert aws.transcribe_jobs() == []


def test_a_refused_upload_fails_the_pending_job_the_app_polls(aws: AwsEnv) -> None:
    job_id = new_job_id()
    key = f"uploads/{job_id}.wav"
    aws.store.create_pending(job_id, object_key=key)
    aws.put(key, SHORT_WAV)
    assert assert_refused(aws, key, ReasonCode.TOO_SHORT) == job_id
    assert aws.job(job_id).source == "api"


def test_objects_outside_uploads_are_ignored(aws: AwsEnv) -> None:
    key = "transcripts/01JD7Q3K8W2S9V4M6T1R5Y0ZXB.json"
    aws.put(key, b"{}", content_type="application/json")
    (out,) = aws.run_starter(aws.upload_event(key))["records"]
    assert out["action"] == "ignored" and "job_id" not in out
