"""The asynchronous pipeline against moto: real handlers, real-shaped events, normal paths."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from alertfusion.errors import ReasonCode
from alertfusion.jobs import JobStatus
from alertfusion.keys import derive_job_id, new_job_id
from tests.conftest import SAMPLES
from tests.integration.conftest import BUCKET, PREFIX, AwsEnv, configure
from tests.pipeline_doubles import BUNDLE_VERSION, FakeClassifier
from tests.pipeline_media import m4a_bytes

pytestmark = pytest.mark.integration

FIXTURE_JOB = "01JD7Q3K8W2S9V4M6T1R5Y0ZXB"  # the job id in s3-object-created.json
HELP_WAV = (SAMPLES / "ko-help-16k.wav").read_bytes()
REGULAR_WAV = (SAMPLES / "ko-regular-22k.wav").read_bytes()
TRANSCRIPTS = json.loads((SAMPLES / "transcripts.json").read_text(encoding="utf-8"))


def classifier() -> FakeClassifier:
    return FakeClassifier(audio_label="help", text_labels={"도와주세요": "help", "가방": "robbery"})


def test_upload_to_final_verdict(aws: AwsEnv) -> None:
    key = f"uploads/{FIXTURE_JOB}.wav"
    aws.put(key, HELP_WAV)
    out = aws.run_starter(aws.upload_event(key))

    assert out["records"] == [
        {"object_key": key, "job_id": FIXTURE_JOB, "action": "accepted", "transcribe": "started"}
    ]
    job = aws.job(FIXTURE_JOB)
    assert job.status is JobStatus.TRANSCRIBING
    assert job.size_bytes == len(HELP_WAV) and job.container == "wav"
    assert job.probed_duration_s == pytest.approx(5.26, abs=0.01)
    assert job.expires_at - job.created_at.timestamp() == pytest.approx(30 * 86400, abs=2)
    transcription = aws.transcribe_job(FIXTURE_JOB)
    assert transcription["LanguageCode"] == "ko-KR"
    assert transcription["MediaFormat"] == "wav"
    assert transcription["Media"]["MediaFileUri"] == f"s3://{BUCKET}/{key}"
    assert [t["type"] for t in aws.queued_tasks()] == ["audio_stage"]

    fake = classifier()
    (stage,) = aws.drain(fake)
    assert (stage.action, stage.label, stage.alerts_sent) == ("recorded", "help", ("preliminary",))
    assert fake.calls[0].audio_bytes == len(HELP_WAV) and fake.calls[0].text is None
    job = aws.job(FIXTURE_JOB)
    assert job.preliminary is not None and job.preliminary.label == "help"
    assert job.status is JobStatus.TRANSCRIBING  # still waiting for the transcript
    assert job.preliminary_latency_ms is not None and job.preliminary_latency_ms >= 0

    text = TRANSCRIPTS["ko-help-16k.wav"]
    final = aws.deliver_transcribe_event(aws.complete_transcription(FIXTURE_JOB, text), fake)
    assert (final.action, final.status, final.label) == ("recorded", JobStatus.DONE, "help")
    assert fake.calls[-1].text == text
    job = aws.job(FIXTURE_JOB)
    assert job.final is not None
    assert job.final.text_source == "transcribe" and job.final.decided_by == "fusion"
    assert job.final.audio_only_reason is None
    assert job.bundle_version == BUNDLE_VERSION
    assert job.transcribe_status == "COMPLETED"
    assert job.received_at is not None and job.transcribing_at is not None
    assert job.preliminary_at is not None and job.done_at is not None
    assert job.received_at <= job.transcribing_at <= job.done_at
    assert job.final_latency_ms is not None and job.preliminary_latency_ms is not None
    assert job.final_latency_ms >= job.preliminary_latency_ms
    stored = json.loads(
        aws.s3.get_object(Bucket=BUCKET, Key=f"results/{FIXTURE_JOB}.json")["Body"].read()
    )
    assert stored["label"] == "help" and stored["text"]["status"] == "used"

    alerts = aws.alerts()
    assert sorted(a["detail"]["alert_id"] for a in alerts) == [
        f"{FIXTURE_JOB}:final",
        f"{FIXTURE_JOB}:preliminary",
    ]
    detail = next(a["detail"] for a in alerts if a["detail"]["stage"] == "final")
    assert detail["label"] == "help" and detail["object_key"] == key
    assert detail["bundle_version"] == BUNDLE_VERSION
    assert set(detail["probabilities"]) == {
        "regular",
        "help",
        "robbery",
        "sexual",
        "theft",
        "violence",
    }
    assert all(
        a["source"] == "alertfusion" and a["detail-type"] == "EmergencyDetected" for a in alerts
    )
    assert aws.transcribe_jobs() == [PREFIX + FIXTURE_JOB]

    # a redelivered completion event changes nothing
    again = aws.deliver_transcribe_event(
        aws.transcribe_event(FIXTURE_JOB, "transcribe-job-completed.json"), fake
    )
    assert again.action == "already_recorded"
    assert len(fake.calls) == 2 and len(aws.alerts()) == 2


def test_regular_recording_sends_no_alert(aws: AwsEnv) -> None:
    job_id = new_job_id()
    key = f"uploads/{job_id}.wav"
    aws.put(key, REGULAR_WAV)
    aws.run_starter(aws.upload_event(key))
    fake = FakeClassifier(audio_label="regular")
    aws.drain(fake)
    aws.deliver_transcribe_event(
        aws.complete_transcription(job_id, TRANSCRIPTS["ko-regular-22k.wav"]), fake
    )
    job = aws.job(job_id)
    assert job.status is JobStatus.DONE and job.final is not None
    assert job.final.label == "regular" and not job.final.is_emergency
    assert aws.alerts() == []


def test_encoded_korean_key_and_non_audio_record_are_handled_independently(aws: AwsEnv) -> None:
    korean = "uploads/신고 녹음 (1).m4a"
    notes = "uploads/notes.txt"
    aws.put(korean, m4a_bytes(3.0), content_type="audio/mp4")
    aws.put(notes, b"hello world\n", content_type="text/plain")
    event = aws.s3_event("s3-object-created-encoded-key.json", [korean, notes])
    # the rewritten event carries the key exactly as S3 encodes it
    assert event["Records"][0]["s3"]["object"]["key"] == (
        "uploads/%EC%8B%A0%EA%B3%A0+%EB%85%B9%EC%9D%8C+%281%29.m4a"
    )

    out = aws.run_starter(event)["records"]

    accepted, rejected = out
    assert accepted["object_key"] == korean and accepted["action"] == "accepted"
    sequencer = event["Records"][0]["s3"]["object"]["sequencer"]
    etag = event["Records"][0]["s3"]["object"]["eTag"]
    assert accepted["job_id"] == derive_job_id(
        korean, version_id=None, etag=etag, sequencer=sequencer
    )
    assert rejected["action"] == "rejected" and rejected["reason"] == "UNSUPPORTED_FORMAT"
    job = aws.job(accepted["job_id"])
    assert job.object_key == korean and job.container == "mp4"
    assert job.probed_duration_s == pytest.approx(3.0, abs=0.05)
    assert (
        aws.transcribe_job(accepted["job_id"])["Media"]["MediaFileUri"] == f"s3://{BUCKET}/{korean}"
    )
    failed = aws.job(rejected["job_id"])
    assert failed.status is JobStatus.FAILED
    assert failed.failure_reason is ReasonCode.UNSUPPORTED_FORMAT
    assert aws.transcribe_jobs() == [PREFIX + accepted["job_id"]]

    # the same event again: same derived ids, nothing new
    again = aws.run_starter(event)["records"]
    assert [r["job_id"] for r in again] == [accepted["job_id"], rejected["job_id"]]
    assert [r["action"] for r in again] == ["duplicate", "duplicate"]
    assert len(aws.transcribe_jobs()) == 1


def test_real_s3_notification_payload_from_moto(aws: AwsEnv) -> None:
    """The bucket's own S3 → SQS notification (moto builds it), fed to the starter."""
    key = "uploads/비상 + 녹음 100%.wav"
    aws.put(key, HELP_WAV)
    messages = aws.sqs.receive_message(
        QueueUrl=aws.upload_events_queue_url, MaxNumberOfMessages=10
    )["Messages"]
    events = [json.loads(m["Body"]) for m in messages]
    event = next(e for e in events if "Records" in e)
    assert "%2B" in event["Records"][0]["s3"]["object"]["key"]  # S3 encodes a literal '+'

    (out,) = aws.run_starter(event)["records"]

    assert out["action"] == "accepted" and out["object_key"] == key
    assert aws.job(out["job_id"]).object_key == key


def test_client_transcript_skips_transcribe(aws: AwsEnv) -> None:
    job_id = new_job_id()
    key = f"uploads/{job_id}.wav"
    text = TRANSCRIPTS["ko-robbery-44k-stereo.wav"]
    aws.store.create_pending(
        job_id, object_key=key, content_type="audio/wav", client_transcript=text
    )
    assert aws.job(job_id).status is JobStatus.UPLOAD_PENDING
    aws.put(key, HELP_WAV)

    (out,) = aws.run_starter(aws.upload_event(key))["records"]
    assert (out["action"], out["transcribe"]) == ("accepted", "skipped")
    fake = classifier()
    (stage,) = aws.drain(fake)

    assert (stage.action, stage.status, stage.label) == ("recorded", JobStatus.DONE, "robbery")
    job = aws.job(job_id)
    assert job.source == "api" and job.final is not None and job.preliminary is None
    assert job.final.text_source == "client" and job.transcribe_status == "SKIPPED"
    assert [c.text for c in fake.calls] == [text]
    assert aws.transcribe_jobs() == []
    assert aws.alert_ids() == [f"{job_id}:final"]


def test_gated_policy_regular_audio_never_starts_transcribe(
    aws: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, TRANSCRIBE_POLICY="gated")
    job_id = new_job_id()
    key = f"uploads/{job_id}.wav"
    aws.put(key, REGULAR_WAV)
    (out,) = aws.run_starter(aws.upload_event(key))["records"]
    assert out["transcribe"] == "deferred"

    (stage,) = aws.drain(FakeClassifier(audio_label="regular"))

    assert (stage.status, stage.transcribe) == (JobStatus.DONE, "skipped")
    job = aws.job(job_id)
    assert job.final is not None and job.final.label == "regular"
    assert job.final.audio_only_reason is ReasonCode.TRANSCRIBE_SKIPPED
    assert aws.transcribe_jobs() == [] and aws.alerts() == []


def test_gated_policy_alert_starts_transcribe(aws: AwsEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, TRANSCRIBE_POLICY="gated")
    job_id = new_job_id()
    key = f"uploads/{job_id}.wav"
    aws.put(key, HELP_WAV)
    aws.run_starter(aws.upload_event(key))
    assert aws.transcribe_jobs() == []

    (stage,) = aws.drain(classifier())

    assert (stage.label, stage.transcribe, stage.status) == (
        "help",
        "started",
        JobStatus.TRANSCRIBING,
    )
    assert aws.transcribe_jobs() == [PREFIX + job_id]
    fake = classifier()
    aws.deliver_transcribe_event(aws.complete_transcription(job_id, "도와주세요"), fake)
    assert aws.job(job_id).status is JobStatus.DONE
    assert sorted(aws.alert_ids()) == [f"{job_id}:final", f"{job_id}:preliminary"]


def test_timestamps_are_utc_and_ordered(aws: AwsEnv) -> None:
    job_id = new_job_id()
    key = f"uploads/{job_id}.wav"
    before = datetime.now(UTC)
    aws.put(key, HELP_WAV)
    aws.run_starter(aws.upload_event(key))
    aws.drain(classifier())
    job = aws.job(job_id)
    assert job.preliminary_at is not None and job.received_at is not None
    assert before.replace(microsecond=0) <= job.received_at <= job.preliminary_at
    raw = aws.ddb.get_item(TableName="alertfusion-test-jobs", Key={"job_id": {"S": job_id}})
    assert raw["Item"]["updated_at"]["S"].endswith("Z")
    assert len(raw["Item"]["updated_at"]["S"]) == len("2026-11-21T09:14:03.512Z")
