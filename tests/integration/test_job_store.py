"""The job store against DynamoDB (moto): conditional writes only move forward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alertfusion.errors import JobStateError, ReasonCode
from alertfusion.jobs import JobStatus, Stage, UploadInfo, Verdict
from alertfusion.keys import new_job_id
from tests.integration.conftest import AwsEnv
from tests.pipeline_doubles import make_result

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)


def upload(key: str) -> UploadInfo:
    return UploadInfo(
        object_key=key,
        extension="wav",
        size_bytes=1000,
        content_type="audio/wav",
        etag="abc",
        version_id=None,
        uploaded_at=NOW,
        container="wav",
        probed_duration_s=2.0,
    )


def verdict(label: str = "help") -> Verdict:
    return Verdict.from_result(make_result(label), decided_at=datetime.now(UTC))


def test_pending_job_is_created_once(aws: AwsEnv) -> None:
    job_id = new_job_id()
    job = aws.store.create_pending(
        job_id, object_key=f"uploads/{job_id}.wav", client_transcript="text"
    )
    assert (job.status, job.source, job.client_transcript) == (
        JobStatus.UPLOAD_PENDING,
        "api",
        "text",
    )
    with pytest.raises(JobStateError):
        aws.store.create_pending(job_id)


def test_receive_is_idempotent_for_the_same_object_only(aws: AwsEnv) -> None:
    store, job_id = aws.store, new_job_id()
    key = f"uploads/{job_id}.wav"
    assert store.receive(job_id, upload(key))
    first = aws.job(job_id)
    assert (first.status, first.source, first.object_key) == (JobStatus.RECEIVED, "s3", key)
    assert store.receive(job_id, upload(key), now=NOW + timedelta(seconds=5))
    assert aws.job(job_id).received_at == first.received_at  # the first receipt is kept
    assert not store.receive(job_id, upload(f"uploads/{job_id}.mp3"))
    assert aws.job(job_id).object_key == key


def test_the_key_post_uploads_recorded_is_the_only_one_that_counts(aws: AwsEnv) -> None:
    store, job_id = aws.store, new_job_id()
    key = f"uploads/{job_id}.wav"
    store.create_pending(job_id, object_key=key)
    assert not store.receive(job_id, upload(f"uploads/{job_id}.mp3"))
    assert not store.reject(
        job_id, ReasonCode.UNSUPPORTED_FORMAT, "x", upload=upload("uploads/x.txt")
    )
    assert aws.job(job_id).status is JobStatus.UPLOAD_PENDING
    assert store.receive(job_id, upload(key))
    job = aws.job(job_id)
    assert (job.status, job.source) == (JobStatus.RECEIVED, "api")


def test_states_only_move_forward(aws: AwsEnv) -> None:
    store, job_id = aws.store, new_job_id()
    key = f"uploads/{job_id}.wav"
    assert not store.mark_transcribing(job_id, "alert-x")  # no record
    assert not store.finish(job_id, verdict(), latency_ms=1.0)
    store.create_pending(job_id, object_key=key)
    assert not store.mark_transcribing(job_id, "alert-x")  # not uploaded yet
    assert not store.finish(job_id, verdict(), latency_ms=1.0)
    store.receive(job_id, upload(key))
    assert store.mark_transcribing(job_id, "alert-x")
    assert not store.mark_transcribing(job_id, "alert-x")
    assert not store.receive(job_id, upload(key))  # no way back to RECEIVED
    assert store.finish(job_id, verdict("theft"), latency_ms=10.0)
    assert not store.finish(job_id, verdict("regular"), latency_ms=20.0)  # written once
    assert not store.fail(job_id, ReasonCode.TIMEOUT, "late")
    assert not store.reject(job_id, ReasonCode.TOO_SHORT, "x", upload=upload(key))
    job = aws.job(job_id)
    assert job.status is JobStatus.DONE and job.final is not None and job.final.label == "theft"
    assert job.failure_reason is None and job.final_latency_ms == 10.0


def test_failed_is_final(aws: AwsEnv) -> None:
    store, job_id = aws.store, new_job_id()
    key = f"uploads/{job_id}.wav"
    store.receive(job_id, upload(key))
    assert store.fail(job_id, ReasonCode.DECODE_FAILED, "cannot decode")
    assert not store.set_preliminary(job_id, verdict(), latency_ms=1.0)
    assert not store.finish(job_id, verdict(), latency_ms=1.0)
    assert not store.mark_transcribing(job_id, "alert-x")
    assert not store.fail(job_id, ReasonCode.TIMEOUT, "again")
    job = aws.job(job_id)
    assert (job.status, job.failure_reason, job.failure_detail) == (
        JobStatus.FAILED,
        ReasonCode.DECODE_FAILED,
        "cannot decode",
    )


def test_preliminary_verdict_and_alert_marks_are_written_once(aws: AwsEnv) -> None:
    store, job_id = aws.store, new_job_id()
    store.receive(job_id, upload(f"uploads/{job_id}.wav"))
    assert store.set_preliminary(job_id, verdict("help"), latency_ms=300.0)
    assert not store.set_preliminary(job_id, verdict("regular"), latency_ms=900.0)
    assert store.mark_alert_sent(job_id, Stage.PRELIMINARY)
    assert not store.mark_alert_sent(job_id, Stage.PRELIMINARY)
    assert store.mark_alert_sent(job_id, Stage.FINAL)
    job = aws.job(job_id)
    assert job.preliminary is not None and job.preliminary.label == "help"
    assert job.preliminary_latency_ms == 300.0 and job.bundle_version == "test-double-1"


def test_rejecting_a_new_object_creates_a_failed_job(aws: AwsEnv) -> None:
    job_id = new_job_id()
    assert aws.store.reject(job_id, ReasonCode.TOO_SHORT, "0.30 s", upload=upload("uploads/a.wav"))
    job = aws.job(job_id)
    assert (job.status, job.failure_reason, job.object_key) == (
        JobStatus.FAILED,
        ReasonCode.TOO_SHORT,
        "uploads/a.wav",
    )


def test_stuck_query_uses_the_status_index(aws: AwsEnv) -> None:
    store = aws.store
    old = [new_job_id() for _ in range(3)]
    for i, job_id in enumerate(old):
        store.receive(job_id, upload(f"uploads/{job_id}.wav"), now=NOW - timedelta(minutes=30 - i))
    fresh = new_job_id()
    store.receive(fresh, upload(f"uploads/{fresh}.wav"), now=NOW)
    moved = new_job_id()
    store.receive(moved, upload(f"uploads/{moved}.wav"), now=NOW - timedelta(minutes=40))
    store.mark_transcribing(moved, "alert-x", now=NOW - timedelta(minutes=40))
    cutoff = NOW - timedelta(minutes=5)
    assert store.stuck(JobStatus.RECEIVED, cutoff) == old  # oldest first
    assert store.stuck(JobStatus.RECEIVED, cutoff, limit=2) == old[:2]
    assert store.stuck(JobStatus.TRANSCRIBING, cutoff) == [moved]
    assert store.stuck(JobStatus.UPLOAD_PENDING, cutoff) == []
    assert store.mark_swept(old[0], JobStatus.RECEIVED, now=NOW)
    assert store.stuck(JobStatus.RECEIVED, cutoff) == old[1:]
    assert aws.job(old[0]).sweep_count == 1
    assert not store.mark_swept(moved, JobStatus.RECEIVED, now=NOW)


def test_a_tombstone_replaces_the_record_and_refuses_every_pipeline_write(aws: AwsEnv) -> None:
    store, job_id = aws.store, new_job_id()
    key = f"uploads/{job_id}.wav"
    store.create_pending(job_id, object_key=key, client_transcript="비밀", owner="user:alice")
    store.receive(job_id, upload(key))
    store.mark_transcribing(job_id, f"alert-{job_id}")
    store.set_preliminary(job_id, verdict("help"), latency_ms=10.0)
    store.mark_alert_sent(job_id, Stage.PRELIMINARY)
    seen = aws.job(job_id)

    # a stale copy (the job moved on since it was read) is not written over
    store.note_transcribe(job_id, "STARTED", detail="still running")
    assert store.tombstone(seen) is None
    fresh = aws.job(job_id)
    tombstone = store.tombstone(fresh)
    assert tombstone is not None and tombstone.status is JobStatus.DELETING
    assert (tombstone.owner, tombstone.object_key, tombstone.created_at) == (
        "user:alice",
        key,
        fresh.created_at,
    )
    assert tombstone.expires_at == fresh.expires_at  # the record's TTL still ends it
    stored = aws.job(job_id)
    assert stored.preliminary is None and stored.client_transcript is None
    assert stored.alert_preliminary_sent_at is None and stored.deleted_at is not None
    assert store.tombstone(stored) is None  # deleted already

    # nothing the pipeline does applies to it any more
    assert store.receive(job_id, upload(key)) is None
    assert store.reject(job_id, ReasonCode.TOO_SHORT, "late") is None
    assert store.reject(job_id, ReasonCode.TOO_SHORT, "late", upload=upload(key)) is None
    assert store.fail(job_id, ReasonCode.TIMEOUT, "late") is None
    assert store.mark_transcribing(job_id, f"alert-{job_id}") is None
    assert store.note_transcribe(job_id, "COMPLETED") is None
    assert store.set_preliminary(job_id, verdict("theft"), latency_ms=1.0) is None
    assert store.finish(job_id, verdict("violence"), latency_ms=1.0) is None
    assert store.add_version_verdict(job_id, verdict("help")) is None
    assert store.mark_alert_sent(job_id, Stage.FINAL) is None
    with pytest.raises(JobStateError):
        store.create_pending(job_id)
    assert aws.job(job_id).model_dump(exclude={"updated_at"}) == stored.model_dump(
        exclude={"updated_at"}
    )

    purged = store.mark_purged(job_id)
    assert purged is not None and purged.status is JobStatus.DELETED and purged.purged_at
    assert store.mark_purged(job_id) is None  # once
