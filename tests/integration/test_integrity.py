"""One recording, one verdict: a job is pinned to the object the starter checked (its
ETag); another object landing under the job's key never changes the job silently, in
either order of events; the classifier only ever classifies the bytes the job names."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytest

from alertfusion.errors import AudioError, ReasonCode
from alertfusion.jobs import JobStatus
from alertfusion.keys import new_job_id
from tests.conftest import SAMPLES
from tests.corpus.bad_audio import float32_wav
from tests.integration.conftest import BUCKET, PREFIX, AwsEnv
from tests.pipeline_doubles import FakeClassifier

pytestmark = pytest.mark.integration

HELP = (SAMPLES / "ko-help-16k.wav").read_bytes()
VIOLENCE = (SAMPLES / "ko-violence-long-16k.wav").read_bytes()
TEXT = "도와주세요. 여기 사람이 쓰러졌어요."
PNG = b"\x89PNG\r\n\x1a\n" + bytes(200)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def classifier() -> FakeClassifier:
    return FakeClassifier(audio_label="help", text_labels={"도와주세요": "violence"})


def named_key() -> tuple[str, str]:
    job_id = new_job_id()
    return job_id, f"uploads/{job_id}.wav"


def only_bytes_of_the_job(aws: AwsEnv, fake: FakeClassifier, job_id: str, *uploads: bytes) -> None:
    """Every classification of the job used the bytes of the object the job names."""
    job = aws.job(job_id)
    named = [data for data in uploads if md5(data) == job.etag]
    assert named, f"the job names an ETag ({job.etag}) no upload had"
    assert {call.audio_sha256 for call in fake.calls} <= {sha(named[0])}


def test_an_object_replaced_before_the_audio_stage_fails_the_job_not_silently(
    aws: AwsEnv,
) -> None:
    """The starter checked A; B replaces it; the audio stage runs before B's event."""
    job_id, key = named_key()
    aws.put(key, HELP)
    first = aws.upload_event(key)
    (accepted,) = aws.run_starter(first)["records"]
    assert accepted["action"] == "accepted"
    aws.put(key, VIOLENCE)
    second = aws.upload_event(key)

    fake = classifier()
    (stage,) = aws.drain(fake)
    assert fake.calls == []  # B's bytes were never classified for A's job
    assert (stage.action, stage.reason) == ("failed", ReasonCode.OBJECT_REPLACED)
    (late,) = aws.run_starter(second)["records"]
    assert (late["action"], late["reason"]) == ("replaced", ReasonCode.OBJECT_REPLACED)
    job = aws.job(job_id)
    assert (job.status, job.failure_reason) == (JobStatus.FAILED, ReasonCode.OBJECT_REPLACED)
    assert job.etag == md5(HELP) and job.replacement_etag == md5(VIOLENCE)
    assert job.object_replaced_at is not None
    assert aws.transcribe_jobs() == [PREFIX + job_id]  # none for B


def test_an_object_replaced_whose_event_comes_first_fails_the_job_too(aws: AwsEnv) -> None:
    """The same, B's event handled before the audio stage: the job is marked at once."""
    job_id, key = named_key()
    aws.put(key, HELP)
    aws.run_starter(aws.upload_event(key))
    aws.put(key, VIOLENCE)
    (late,) = aws.run_starter(aws.upload_event(key))["records"]
    assert late["action"] == "replaced"
    assert late["reason"] == ReasonCode.OBJECT_REPLACED
    assert aws.job(job_id).object_replaced_at is not None

    fake = classifier()
    (stage,) = aws.drain(fake)
    assert fake.calls == []
    assert (stage.action, stage.reason) == ("failed", ReasonCode.OBJECT_REPLACED)
    assert aws.job(job_id).status is JobStatus.FAILED
    assert aws.transcribe_jobs() == [PREFIX + job_id]


@pytest.mark.parametrize("order", ["first-event-first", "second-event-first"])
def test_two_objects_before_the_starter_give_a_job_of_the_one_in_place(
    aws: AwsEnv, order: str
) -> None:
    """Two POSTs back to back: the event of the object that is gone does nothing, the
    job takes the object in place, whatever order the events come in."""
    job_id, key = named_key()
    aws.put(key, HELP)
    first = aws.upload_event(key)
    aws.put(key, VIOLENCE)
    second = aws.upload_event(key)
    events = [first, second] if order == "first-event-first" else [second, first]
    actions = [aws.run_starter(event)["records"][0]["action"] for event in events]
    assert sorted(actions) == ["accepted", "superseded"]

    fake = classifier()
    aws.drain(fake)
    job = aws.job(job_id)
    assert job.etag == md5(VIOLENCE) and job.object_replaced_at is None
    assert job.preliminary is not None and job.preliminary.object_etag == md5(VIOLENCE)
    only_bytes_of_the_job(aws, fake, job_id, HELP, VIOLENCE)
    assert aws.transcribe_jobs() == [PREFIX + job_id]


def test_an_object_replaced_while_transcribing_keeps_the_audio_verdict(aws: AwsEnv) -> None:
    """B lands after the preliminary verdict, while Transcribe runs (it reads by key, so
    its transcript may be B's): the final verdict is the job's own audio-only one."""
    job_id, key = named_key()
    aws.put(key, HELP)
    aws.run_starter(aws.upload_event(key))
    fake = classifier()
    aws.drain(fake)
    assert aws.job(job_id).preliminary is not None
    aws.put(key, VIOLENCE)
    done = aws.complete_transcription(job_id, TEXT)
    final = aws.deliver_transcribe_event(done, fake)
    assert fake.text_calls == []  # the transcript was never fused
    only_bytes_of_the_job(aws, fake, job_id, HELP, VIOLENCE)
    assert (final.status, final.reason) == (JobStatus.DONE, ReasonCode.OBJECT_REPLACED)
    job = aws.job(job_id)
    assert job.final is not None and job.preliminary is not None
    assert job.final.decided_by == "audio_only" and job.final.text_source is None
    assert job.final.label == job.preliminary.label
    assert job.final.object_etag == md5(HELP)
    # B's own event, late: refused, the job keeps its verdict
    (late,) = aws.run_starter(aws.upload_event(key))["records"]
    assert late["action"] == "replaced"
    assert aws.job(job_id).final == job.final


def test_replaced_back_with_the_same_bytes_discards_the_transcript(aws: AwsEnv) -> None:
    """A, then B, then A again: the job's ETag matches once more, but Transcribe may have
    read B meanwhile, so the transcript is not fused."""
    job_id, key = named_key()
    aws.put(key, HELP)
    aws.run_starter(aws.upload_event(key))
    fake = classifier()
    aws.drain(fake)
    aws.put(key, VIOLENCE)
    aws.run_starter(aws.upload_event(key))  # B noted on the job
    aws.put(key, HELP)
    (again,) = aws.run_starter(aws.upload_event(key))["records"]
    assert again["action"] == "duplicate"
    final = aws.deliver_transcribe_event(aws.complete_transcription(job_id, TEXT), fake)
    assert fake.text_calls == []
    only_bytes_of_the_job(aws, fake, job_id, HELP, VIOLENCE)
    assert (final.status, final.reason) == (JobStatus.DONE, ReasonCode.OBJECT_REPLACED)


def test_a_second_object_after_done_never_changes_the_job(aws: AwsEnv) -> None:
    """The presigned POST used again after the job is DONE (a PNG named .wav): refused,
    noted on the job, no new Transcribe job; the verdict stays the first object's."""
    job_id, key = named_key()
    aws.put(key, HELP)
    aws.run_starter(aws.upload_event(key))
    fake = classifier()
    aws.drain(fake)
    aws.deliver_transcribe_event(aws.complete_transcription(job_id, TEXT), fake)
    before = aws.job(job_id)
    assert before.status is JobStatus.DONE and before.final is not None

    aws.put(key, PNG, content_type="audio/wav")
    (late,) = aws.run_starter(aws.upload_event(key))["records"]
    assert late["action"] == "replaced"
    assert late["reason"] == ReasonCode.OBJECT_REPLACED
    after = aws.job(job_id)
    assert after.status is JobStatus.DONE and after.final == before.final
    assert after.etag == md5(HELP) and after.replacement_etag == md5(PNG)
    assert after.object_replaced_at is not None
    assert aws.transcribe_jobs() == [PREFIX + job_id]
    assert len(fake.calls) == 2  # the preliminary and the final, both of A
    assert after.final is not None and after.final.object_etag == md5(HELP)


def test_a_hand_dropped_replacement_is_a_new_job(aws: AwsEnv) -> None:
    """A key that names no job: every object is its own job (its id derives from the
    ETag); the first one, whose bytes are gone, ends OBJECT_REPLACED."""
    key = "uploads/신고 녹음.wav"
    aws.put(key, HELP)
    (first,) = aws.run_starter(aws.upload_event(key))["records"]
    aws.put(key, VIOLENCE)
    (second,) = aws.run_starter(aws.upload_event(key))["records"]
    assert first["action"] == second["action"] == "accepted"
    assert first["job_id"] != second["job_id"]
    fake = classifier()
    aws.drain(fake)
    old, new = aws.job(first["job_id"]), aws.job(second["job_id"])
    assert old.status is JobStatus.FAILED and old.preliminary is None
    assert (old.status, old.failure_reason) == (JobStatus.FAILED, ReasonCode.OBJECT_REPLACED)
    assert new.preliminary is not None and new.preliminary.object_etag == md5(VIOLENCE)
    assert {c.audio_sha256 for c in fake.calls} == {sha(VIOLENCE)}


def test_a_hand_dropped_object_replaced_before_the_starter_is_refused(aws: AwsEnv) -> None:
    key = "uploads/dropped.wav"
    aws.put(key, HELP)
    gone = aws.upload_event(key)
    aws.put(key, VIOLENCE)
    (out,) = aws.run_starter(gone)["records"]
    assert out["action"] == "rejected"
    assert out["reason"] == ReasonCode.OBJECT_REPLACED
    assert aws.job(out["job_id"]).status is JobStatus.FAILED
    assert aws.transcribe_jobs() == []


def test_float_samples_start_transcribe_only_after_decoding(aws: AwsEnv) -> None:
    """NaN samples are found by decoding, not by the header probe: a float WAV's
    Transcribe job waits for the audio stage, so a NaN upload ends FAILED with none."""
    job_id, key = named_key()
    nan = float32_wav(np.r_[np.zeros(16_000), np.nan, np.zeros(16_000)])
    aws.put(key, nan)
    (out,) = aws.run_starter(aws.upload_event(key))["records"]
    assert (out["action"], out["transcribe"]) == ("accepted", "deferred")
    assert aws.transcribe_jobs() == []
    fake = FakeClassifier(fail_next=[AudioError("NaN", code=ReasonCode.NOT_FINITE)])
    (stage,) = aws.drain(fake)
    assert (stage.action, stage.reason) == ("failed", ReasonCode.NOT_FINITE)
    assert aws.transcribe_jobs() == []
    # a float WAV that decodes is transcribed once its preliminary verdict is recorded
    other, other_key = named_key()
    aws.put(other_key, float32_wav(np.zeros(32_000, dtype=np.float32) + 0.1))
    aws.run_starter(aws.upload_event(other_key))
    (ok,) = aws.drain(FakeClassifier())
    assert (ok.action, ok.transcribe) == ("recorded", "started")
    assert aws.transcribe_jobs() == [PREFIX + other]


def test_every_read_of_the_audio_is_pinned_to_the_etag(aws: AwsEnv) -> None:
    """The starter's ranged reads and the stages' reads all carry If-Match."""
    job_id, key = named_key()
    aws.put(key, HELP)
    seen: list[dict[str, Any]] = []

    def spy(params: dict[str, Any], **_: Any) -> None:
        if params.get("url_path", "").endswith(key.split("/", 1)[1]):
            seen.append(params)

    from alertfusion.pipeline.context import get_context

    get_context().s3.meta.events.register("before-call.s3.GetObject", spy)
    aws.run_starter(aws.upload_event(key))
    aws.drain(classifier())
    aws.deliver_transcribe_event(aws.complete_transcription(job_id, TEXT), classifier())
    assert len(seen) >= 3  # the starter's head, the audio stage, the final verdict
    assert all(p["headers"].get("If-Match") == f'"{md5(HELP)}"' for p in seen)
    assert aws.s3.head_object(Bucket=BUCKET, Key=key)["ETag"] == f'"{md5(HELP)}"'


def test_a_backfill_reclassification_of_a_replaced_object_is_refused(aws: AwsEnv) -> None:
    """A DONE job whose object was replaced since: a newer bundle cannot classify the
    job's recording (its bytes are gone); the job keeps its state and verdict."""
    from alertfusion.pipeline import reclassify_job
    from tests.pipeline_doubles import BUNDLE_VERSION

    job_id, key = named_key()
    aws.put(key, HELP)
    aws.run_starter(aws.upload_event(key))
    fake = classifier()
    aws.drain(fake)
    aws.deliver_transcribe_event(aws.complete_transcription(job_id, TEXT), fake)
    done = aws.job(job_id)
    aws.put(key, VIOLENCE)
    newer = FakeClassifier()
    newer.manifest = newer.manifest.model_copy(update={"bundle_version": "v2"})
    assert BUNDLE_VERSION != "v2"
    outcome = reclassify_job(job_id, "v2", newer)
    assert (outcome.action, outcome.reason) == ("failed", ReasonCode.OBJECT_REPLACED)
    assert newer.calls == []
    assert aws.job(job_id).final == done.final and aws.job(job_id).status is JobStatus.DONE
