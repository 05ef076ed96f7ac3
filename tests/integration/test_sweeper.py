"""The sweeper handler against moto: lost events, stuck jobs, hard timeouts."""

from __future__ import annotations

import pytest
from moto.moto_api import state_manager

from alertfusion.errors import ReasonCode
from alertfusion.jobs import JobStatus
from alertfusion.keys import new_job_id
from tests.conftest import SAMPLES
from tests.integration.conftest import PREFIX, AwsEnv
from tests.pipeline_doubles import FakeClassifier

pytestmark = pytest.mark.integration

HELP_WAV = (SAMPLES / "ko-help-16k.wav").read_bytes()
STUCK = 300 + 1  # STUCK_AFTER_SECONDS default, plus one
HARD = 3600 + 1  # HARD_TIMEOUT_SECONDS default, plus one


def classifier() -> FakeClassifier:
    return FakeClassifier(audio_label="help", text_labels={"도와": "help"})


def started_job(aws: AwsEnv) -> str:
    job_id = new_job_id()
    key = f"uploads/{job_id}.wav"
    aws.put(key, HELP_WAV)
    aws.run_starter(aws.upload_event(key))
    return job_id


def keep_transcribe_running() -> None:
    """moto's Transcribe jobs complete on the first status read by default; this keeps them
    QUEUED for a thousand reads."""
    state_manager.set_transition(
        model_name="transcribe::transcriptionjob",
        transition={"progression": "manual", "times": 1000},
    )


def test_lost_completion_event_is_finished_by_the_sweeper(aws: AwsEnv) -> None:
    job_id = started_job(aws)
    fake = classifier()
    aws.drain(fake)
    aws.complete_transcription(job_id, "도와주세요")  # the event is never delivered
    assert aws.run_sweeper()["finalize_sent"] == 0  # not stuck yet
    aws.age(job_id, STUCK)

    report = aws.run_sweeper()

    assert (report["checked"], report["finalize_sent"]) == (1, 1)
    (out,) = aws.drain(fake)
    assert (out.action, out.status) == ("recorded", JobStatus.DONE)
    job = aws.job(job_id)
    assert job.final is not None and job.final.text_source == "transcribe"
    assert job.sweep_count == 1
    assert aws.run_sweeper()["checked"] == 0  # DONE jobs are not swept again


def test_lost_failure_event_is_finished_audio_only(aws: AwsEnv) -> None:
    job_id = started_job(aws)
    aws.drain(classifier())
    aws.fail_transcription(job_id, "Internal failure")
    aws.age(job_id, STUCK)
    assert aws.run_sweeper()["finalize_sent"] == 1
    aws.drain(classifier())
    job = aws.job(job_id)
    assert job.status is JobStatus.DONE and job.final is not None
    assert job.final.audio_only_reason is ReasonCode.TRANSCRIBE_FAILED


def test_running_transcription_is_left_alone_until_the_hard_limit(aws: AwsEnv) -> None:
    keep_transcribe_running()
    job_id = started_job(aws)
    aws.drain(classifier())
    aws.age(job_id, STUCK)
    report = aws.run_sweeper()
    assert (report["still_running"], report["finalize_sent"]) == (1, 0)
    assert aws.queued_tasks() == []
    aws.age(job_id, HARD)
    report = aws.run_sweeper()
    assert report["timed_out"] == 1
    job = aws.job(job_id)
    assert (job.status, job.failure_reason) == (JobStatus.FAILED, ReasonCode.TIMEOUT)
    assert job.preliminary is not None  # the verdict already given stays readable
    assert "TRANSCRIBING" in (job.failure_detail or "")


def test_transcription_job_unknown_to_transcribe(aws: AwsEnv) -> None:
    job_id = started_job(aws)
    aws.transcribe.delete_transcription_job(TranscriptionJobName=PREFIX + job_id)
    aws.age(job_id, STUCK)
    assert aws.run_sweeper()["finalize_sent"] == 1
    aws.drain(classifier())
    job = aws.job(job_id)
    assert job.status is JobStatus.DONE and job.final is not None
    assert job.final.audio_only_reason is ReasonCode.TRANSCRIBE_FAILED


def test_lost_audio_stage_task_is_sent_again(aws: AwsEnv) -> None:
    job_id = new_job_id()
    key = f"uploads/{job_id}.wav"
    aws.put(key, HELP_WAV)
    aws.inject_error("transcribe", "StartTranscriptionJob", "LimitExceededException", times=6)
    with pytest.raises(Exception, match="records failed"):
        aws.run_starter(aws.upload_event(key))
    assert aws.purge_work_queue() == 1  # and the task is lost too
    aws.age(job_id, STUCK)

    report = aws.run_sweeper()

    assert report["audio_stage_sent"] == 1
    (out,) = aws.drain(classifier())
    assert (out.action, out.transcribe, out.status) == (
        "recorded",
        "started",
        JobStatus.TRANSCRIBING,
    )
    assert aws.transcribe_jobs() == [PREFIX + job_id]
    assert aws.run_sweeper()["audio_stage_sent"] == 0  # re-driven jobs wait another period


def test_upload_that_never_came(aws: AwsEnv) -> None:
    job_id = new_job_id()
    aws.store.create_pending(job_id, object_key=f"uploads/{job_id}.wav")
    aws.age(job_id, STUCK)
    assert aws.run_sweeper()["timed_out"] == 0  # the app may still be uploading
    aws.age(job_id, HARD)
    assert aws.run_sweeper()["timed_out"] == 1
    job = aws.job(job_id)
    assert (job.status, job.failure_reason) == (JobStatus.FAILED, ReasonCode.TIMEOUT)


def test_received_job_past_the_hard_limit_times_out(aws: AwsEnv) -> None:
    job_id = new_job_id()
    key = f"uploads/{job_id}.wav"
    aws.put(key, HELP_WAV)
    aws.inject_error("transcribe", "StartTranscriptionJob", "LimitExceededException", times=6)
    with pytest.raises(Exception, match="records failed"):
        aws.run_starter(aws.upload_event(key))
    aws.age(job_id, HARD)
    assert aws.run_sweeper()["timed_out"] == 1
    assert aws.job(job_id).failure_reason is ReasonCode.TIMEOUT
    (late,) = aws.drain(classifier())  # the audio-stage task that was still queued
    assert late.action == "final"
