"""Faults against moto: duplicates, reordering, Transcribe failures and throttling, crashes
between steps. Each test counts what a user would notice: jobs, Transcribe jobs, verdicts,
classifier runs and alerts."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from alertfusion import notify
from alertfusion.errors import AudioError, ReasonCode, TransientError
from alertfusion.jobs import JobStatus, JobStore
from alertfusion.keys import new_job_id
from functions.starter.app import RecordsFailed
from tests.conftest import SAMPLES
from tests.integration.conftest import PREFIX, AwsEnv
from tests.pipeline_doubles import FakeClassifier

pytestmark = pytest.mark.integration

HELP_WAV = (SAMPLES / "ko-help-16k.wav").read_bytes()
TEXT = "도와주세요. 여기 사람이 쓰러졌어요."


def classifier() -> FakeClassifier:
    return FakeClassifier(audio_label="help", text_labels={"도와주세요": "violence"})


def uploaded(aws: AwsEnv) -> tuple[str, dict[str, Any]]:
    job_id = new_job_id()
    key = f"uploads/{job_id}.wav"
    aws.put(key, HELP_WAV)
    return job_id, aws.upload_event(key)


class Crash(Exception):
    """An injected crash (the process dies here)."""


def crash_once(monkeypatch: pytest.MonkeyPatch, target: object, name: str) -> list[int]:
    """Make `target.name` raise Crash on its first call, then behave; returns a call log."""
    original = getattr(target, name)
    calls: list[int] = []

    def wrapper(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise Crash(f"injected crash in {name}")
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, wrapper)
    return calls


def test_duplicate_s3_events_make_one_job_and_one_transcribe_job(aws: AwsEnv) -> None:
    job_id, event = uploaded(aws)
    doubled = {"Records": event["Records"] * 2}  # the same record twice in one event
    outs = [aws.run_starter(event), aws.run_starter(doubled), aws.run_starter(event)]
    actions = [r["action"] for out in outs for r in out["records"]]
    assert actions == ["accepted", "duplicate", "duplicate", "duplicate"]
    assert aws.transcribe_jobs() == [PREFIX + job_id]
    fake = classifier()
    aws.drain(fake)
    assert len(fake.calls) == 1
    assert aws.alert_ids() == [f"{job_id}:preliminary"]


def test_duplicate_tasks_and_events_do_not_double_anything(aws: AwsEnv) -> None:
    job_id, event = uploaded(aws)
    aws.run_starter(event)
    for _ in range(3):  # SQS delivers at least once
        aws.sqs.send_message(
            QueueUrl=aws.work_queue_url,
            MessageBody=json.dumps({"type": "audio_stage", "job_id": job_id}),
        )
    fake = classifier()
    outcomes = aws.drain(fake)
    assert Counter(o.action for o in outcomes) == {"recorded": 1, "already_recorded": 3}
    done = aws.complete_transcription(job_id, TEXT)
    for _ in range(3):  # EventBridge too
        aws.deliver_transcribe_event(done, fake)
    assert len(fake.audio_only_calls) == 1 and len(fake.text_calls) == 1
    assert sorted(aws.alert_ids()) == [f"{job_id}:final", f"{job_id}:preliminary"]
    assert aws.transcribe_jobs() == [PREFIX + job_id]


def snapshot(aws: AwsEnv, job_id: str) -> tuple[object, ...]:
    job = aws.job(job_id)
    assert job.preliminary is not None and job.final is not None
    return (
        job.status,
        job.preliminary.label,
        job.final.label,
        job.final.text_source,
        job.transcribe_status,
        sorted(a["detail"]["stage"] for a in aws.alerts() if a["detail"]["job_id"] == job_id),
    )


def test_events_in_reverse_order_converge(aws: AwsEnv) -> None:
    # normal order
    normal, event = uploaded(aws)
    aws.run_starter(event)
    aws.drain(classifier())
    aws.deliver_transcribe_event(aws.complete_transcription(normal, TEXT), classifier())

    # reverse: the Transcribe completion arrives before the audio stage runs
    reverse, event = uploaded(aws)
    aws.run_starter(event)
    tasks = aws.queued_tasks()
    aws.purge_work_queue()
    final = aws.deliver_transcribe_event(aws.complete_transcription(reverse, TEXT), classifier())
    assert final.status is JobStatus.DONE
    for task in tasks:  # the delayed audio-stage task arrives last
        aws.sqs.send_message(QueueUrl=aws.work_queue_url, MessageBody=json.dumps(task))
    aws.drain(classifier())

    assert snapshot(aws, reverse) == snapshot(aws, normal)
    assert sorted(aws.transcribe_jobs()) == sorted([PREFIX + normal, PREFIX + reverse])


def test_completion_before_the_starter_marked_transcribing(
    aws: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The starter started Transcribe and died before marking the job; the completion event
    overtakes its retry."""
    job_id, event = uploaded(aws)
    crash_once(monkeypatch, JobStore, "mark_transcribing")
    with pytest.raises(RecordsFailed):
        aws.run_starter(event)
    assert aws.job(job_id).status is JobStatus.RECEIVED
    fake = classifier()
    done = aws.deliver_transcribe_event(aws.complete_transcription(job_id, TEXT), fake)
    assert done.status is JobStatus.DONE
    (retry,) = aws.run_starter(event)["records"]  # Lambda's retry of the S3 event
    assert retry["action"] == "duplicate"
    aws.drain(fake)
    job = aws.job(job_id)
    assert job.status is JobStatus.DONE and job.preliminary is not None
    assert aws.transcribe_jobs() == [PREFIX + job_id]


def test_transcribe_failure_gives_an_audio_only_verdict(aws: AwsEnv) -> None:
    job_id, event = uploaded(aws)
    aws.run_starter(event)
    fake = classifier()
    aws.drain(fake)
    out = aws.deliver_transcribe_event(
        aws.fail_transcription(job_id, "The media format is not supported."), fake
    )
    assert (out.action, out.status, out.reason) == (
        "recorded",
        JobStatus.DONE,
        ReasonCode.TRANSCRIBE_FAILED,
    )
    job = aws.job(job_id)
    assert job.final is not None and job.final.decided_by == "audio_only"
    assert job.final.audio_only_reason is ReasonCode.TRANSCRIBE_FAILED
    # moto omits FailureReason from GetTranscriptionJob; the event's detail has none either
    assert job.final.audio_only_detail is not None and job.transcribe_status == "FAILED"
    assert [c.text for c in fake.calls] == [None, None]


def test_failure_reason_from_the_event_is_kept(aws: AwsEnv) -> None:
    job_id, event = uploaded(aws)
    aws.run_starter(event)
    failed = aws.fail_transcription(job_id, "x")
    failed["detail"]["FailureReason"] = "Invalid sample rate for audio file."
    aws.deliver_transcribe_event(failed, classifier())
    job = aws.job(job_id)
    assert job.final is not None
    assert job.final.audio_only_detail == "Transcribe failed: Invalid sample rate for audio file."


@pytest.mark.parametrize(
    "missing_file", [False, True], ids=["empty-transcript", "no-transcript-file"]
)
def test_empty_or_missing_transcript_gives_an_audio_only_verdict(
    aws: AwsEnv, missing_file: bool
) -> None:
    job_id, event = uploaded(aws)
    aws.run_starter(event)
    done = aws.complete_transcription(job_id, "", output="asr-output-empty.json")
    if missing_file:
        aws.s3.delete_object(Bucket="alertfusion-test-audio", Key=f"transcripts/{job_id}.json")
    fake = classifier()
    out = aws.deliver_transcribe_event(done, fake)
    expected = ReasonCode.TRANSCRIPT_INVALID if missing_file else ReasonCode.TRANSCRIPT_EMPTY
    assert (out.status, out.reason) == (JobStatus.DONE, expected)
    assert [c.text for c in fake.calls] == [None]


def test_throttled_start_is_retried(aws: AwsEnv) -> None:
    job_id, event = uploaded(aws)
    sleeps: list[float] = []
    from alertfusion.pipeline.context import get_context

    get_context().sleep = sleeps.append
    throttled = aws.inject_error(
        "transcribe", "StartTranscriptionJob", "LimitExceededException", times=3
    )
    (out,) = aws.run_starter(event)["records"]
    assert (out["action"], out["transcribe"]) == ("accepted", "started")
    assert len(throttled) == 3 and len(sleeps) == 3
    assert all(0 <= s <= 4.0 for s in sleeps)
    assert aws.transcribe_jobs() == [PREFIX + job_id]
    assert aws.job(job_id).status is JobStatus.TRANSCRIBING


def test_throttling_that_outlasts_the_retries_is_finished_later(aws: AwsEnv) -> None:
    job_id, event = uploaded(aws)
    aws.inject_error("transcribe", "StartTranscriptionJob", "LimitExceededException", times=6)
    with pytest.raises(RecordsFailed):
        aws.run_starter(event)
    job = aws.job(job_id)
    assert job.status is JobStatus.RECEIVED and aws.transcribe_jobs() == []
    assert [t["type"] for t in aws.queued_tasks()] == ["audio_stage"]
    # the audio stage finds Transcribe not started and starts it itself
    (stage,) = aws.drain(classifier())
    assert (stage.transcribe, stage.status) == ("started", JobStatus.TRANSCRIBING)
    # Lambda's retry of the S3 event comes later: nothing new
    (retry,) = aws.run_starter(event)["records"]
    assert retry["action"] == "duplicate"
    assert aws.transcribe_jobs() == [PREFIX + job_id]


def test_transcribe_refusing_the_media_still_gives_a_verdict(aws: AwsEnv) -> None:
    job_id, event = uploaded(aws)
    aws.inject_error("transcribe", "StartTranscriptionJob", "BadRequestException", times=1)
    (out,) = aws.run_starter(event)["records"]
    assert out["transcribe"] == "refused"
    fake = classifier()
    aws.drain(fake)  # the audio stage, then the finalize task the starter queued
    job = aws.job(job_id)
    assert job.status is JobStatus.DONE and job.final is not None
    assert job.final.audio_only_reason is ReasonCode.TRANSCRIBE_FAILED
    assert aws.transcribe_jobs() == []


def test_starter_crash_between_queueing_and_transcribe(
    aws: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    import alertfusion.pipeline.starter as starter

    job_id, event = uploaded(aws)
    crash_once(monkeypatch, starter, "_ensure_transcription")
    with pytest.raises(RecordsFailed):
        aws.run_starter(event)
    (retry,) = aws.run_starter(event)["records"]
    assert (retry["action"], retry["transcribe"]) == ("accepted", "started")
    fake = classifier()
    outcomes = aws.drain(fake)  # two audio-stage tasks, one from each attempt
    assert [o.action for o in outcomes] == ["recorded", "already_recorded"]
    assert len(fake.calls) == 1 and aws.transcribe_jobs() == [PREFIX + job_id]
    assert aws.alert_ids() == [f"{job_id}:preliminary"]


def test_crash_after_the_preliminary_verdict_before_the_alert(
    aws: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id, event = uploaded(aws)
    aws.run_starter(event)
    crashes = crash_once(monkeypatch, notify, "send_emergency")
    fake = classifier()
    assert aws.drain(fake, max_rounds=1) == []  # the attempt died; the task stays queued
    assert aws.job(job_id).preliminary is not None and aws.alerts() == []
    (retry,) = aws.drain(fake)
    assert retry.action == "already_recorded" and retry.alerts_sent == ("preliminary",)
    assert len(fake.calls) == 1 and len(crashes) == 2
    assert aws.alert_ids() == [f"{job_id}:preliminary"]


def test_crash_after_the_final_verdict_before_the_alert(
    aws: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id, event = uploaded(aws)
    aws.run_starter(event)
    fake = classifier()
    aws.drain(fake)
    done = aws.complete_transcription(job_id, TEXT)
    crash_once(monkeypatch, notify, "send_emergency")
    with pytest.raises(Crash):
        aws.deliver_transcribe_event(done, fake)
    assert aws.job(job_id).status is JobStatus.DONE
    retry = aws.deliver_transcribe_event(done, fake)  # EventBridge's retry
    assert retry.action == "already_recorded" and retry.alerts_sent == ("final",)
    assert len(fake.text_calls) == 1
    assert sorted(aws.alert_ids()) == [f"{job_id}:final", f"{job_id}:preliminary"]


def test_crash_after_the_result_file_before_the_final_write(
    aws: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id, event = uploaded(aws)
    aws.run_starter(event)
    fake = classifier()
    aws.drain(fake)
    done = aws.complete_transcription(job_id, TEXT)
    crash_once(monkeypatch, JobStore, "finish")
    with pytest.raises(Crash):
        aws.deliver_transcribe_event(done, fake)
    assert aws.job(job_id).final is None
    retry = aws.deliver_transcribe_event(done, fake)
    assert (retry.action, retry.status) == ("recorded", JobStatus.DONE)
    assert len(fake.text_calls) == 2  # recomputed once; written once
    assert sorted(aws.alert_ids()) == [f"{job_id}:final", f"{job_id}:preliminary"]


def test_crash_between_alert_and_mark_is_the_documented_duplicate(
    aws: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Send-then-mark never loses an alert; if the process dies after PutEvents and before
    the mark, the retry sends it again with the same alert_id and detail (notify.py)."""
    job_id, event = uploaded(aws)
    aws.run_starter(event)
    crash_once(monkeypatch, JobStore, "mark_alert_sent")
    fake = classifier()
    assert aws.drain(fake, max_rounds=1) == []  # died after PutEvents, before the mark
    (retry,) = aws.drain(fake)
    assert retry.alerts_sent == ("preliminary",)
    alerts = aws.alerts()
    assert [a["detail"]["alert_id"] for a in alerts] == [f"{job_id}:preliminary"] * 2
    assert alerts[0]["detail"] == alerts[1]["detail"]
    assert len(fake.calls) == 1


def test_undecodable_audio_fails_the_job_for_good(aws: AwsEnv) -> None:
    job_id, event = uploaded(aws)
    aws.run_starter(event)
    fake = FakeClassifier(fail_next=[AudioError("cannot decode", code=ReasonCode.DECODE_FAILED)])
    (out,) = aws.drain(fake)
    assert (out.action, out.reason) == ("failed", ReasonCode.DECODE_FAILED)
    late = aws.deliver_transcribe_event(aws.complete_transcription(job_id, TEXT), fake)
    assert late.action == "final" and len(fake.calls) == 1
    job = aws.job(job_id)
    assert (job.status, job.failure_reason) == (JobStatus.FAILED, ReasonCode.DECODE_FAILED)


def test_transient_classifier_errors_are_retried(aws: AwsEnv) -> None:
    job_id, event = uploaded(aws)
    aws.run_starter(event)
    fake = FakeClassifier(fail_next=[RuntimeError("ONNX Runtime hiccup")])
    assert aws.drain(fake, max_rounds=1) == []
    assert aws.job(job_id).preliminary is None
    (out,) = aws.drain(fake)
    assert out.action == "recorded" and len(fake.calls) == 2


def test_a_transcript_the_engine_refuses_falls_back_to_audio(aws: AwsEnv) -> None:
    from alertfusion.errors import TextError

    job_id, event = uploaded(aws)
    aws.run_starter(event)
    fake = FakeClassifier(fail_on_text=TextError("too long", code=ReasonCode.TEXT_TOO_LONG))
    aws.drain(fake)
    out = aws.deliver_transcribe_event(aws.complete_transcription(job_id, TEXT * 500), fake)
    assert (out.status, out.reason) == (JobStatus.DONE, ReasonCode.TEXT_TOO_LONG)


def test_one_bad_record_does_not_stop_the_others(aws: AwsEnv) -> None:
    first, _ = uploaded(aws)
    second, _ = uploaded(aws)
    keys = [f"uploads/{first}.wav", f"uploads/{second}.wav"]
    event = aws.s3_event("s3-object-created-encoded-key.json", keys)
    failing = aws.inject_error(
        "s3",
        "GetObject",
        "SlowDown",
        status=503,
        times=1,
        when=lambda request: first in request["url_path"],
    )
    with pytest.raises(RecordsFailed):
        aws.run_starter(event)
    assert failing and aws.job(second).status is JobStatus.TRANSCRIBING
    assert aws.store.get(first) is None
    retry = aws.run_starter(event)["records"]  # the injected outage is over
    assert [r["action"] for r in retry] == ["accepted", "duplicate"]
    assert sorted(aws.transcribe_jobs()) == sorted([PREFIX + first, PREFIX + second])


# -- issue 17: the faults no test covered ---------------------------------------------------


def inject_answer(
    aws: AwsEnv, service: str, operation: str, body: dict[str, Any], *, times: int
) -> list[dict[str, Any]]:
    """The pipeline's own `service` client gets `body` as a successful (200) answer to the
    next `times` `operation` calls (what a partial failure looks like on the wire)."""
    from botocore.awsrequest import AWSResponse

    from tests.integration.conftest import pipeline_client

    client = pipeline_client(service)
    answered: list[dict[str, Any]] = []

    def hook(params: dict[str, Any], **_: Any) -> Any:
        if len(answered) >= times:
            return None
        answered.append(params)
        return AWSResponse(f"https://{service}.injected", 200, {}, None), {
            **body,
            "ResponseMetadata": {"HTTPStatusCode": 200},
        }

    event = f"before-call.{client.meta.service_model.service_id.hyphenize()}.{operation}"
    client.meta.events.register(event, hook)
    return answered


def inject_timeout(aws: AwsEnv, service: str, operation: str, *, times: int) -> list[int]:
    """The next `times` `operation` calls of the pipeline's `service` client time out
    (botocore's ReadTimeoutError: the request may or may not have reached AWS)."""
    from botocore.exceptions import ReadTimeoutError

    from tests.integration.conftest import pipeline_client

    client = pipeline_client(service)
    raised: list[int] = []

    def hook(**_: Any) -> None:
        if len(raised) < times:
            raised.append(1)
            raise ReadTimeoutError(endpoint_url=f"https://{service}.injected")

    event = f"before-call.{client.meta.service_model.service_id.hyphenize()}.{operation}"
    client.meta.events.register(event, hook)
    return raised


def converged(aws: AwsEnv, job_id: str, fake: FakeClassifier) -> None:
    """Nothing lost, nothing doubled: DONE with both verdicts (a retry may compute one
    again; each is written once), one Transcribe job, each alert exactly once."""
    job = aws.job(job_id)
    assert job.status is JobStatus.DONE and job.preliminary and job.final
    assert job.final.text_source == "transcribe"
    assert aws.transcribe_jobs() == [PREFIX + job_id]
    assert sorted(aws.alert_ids()) == [f"{job_id}:final", f"{job_id}:preliminary"]
    assert fake.text_calls  # the final verdict fused the transcript


def run_to_done(aws: AwsEnv, job_id: str, event: dict[str, Any], fake: FakeClassifier) -> None:
    """The whole flow with retries as Lambda, SQS and EventBridge make them: every step
    that raised runs again until it passes."""
    for _ in range(5):
        try:
            aws.run_starter(event)
            break
        except RecordsFailed:
            continue
    for _ in range(5):
        aws.drain(fake)
    done = aws.complete_transcription(job_id, TEXT)
    for _ in range(5):
        try:
            aws.deliver_transcribe_event(done, fake)
        except Exception:
            continue
        if aws.job(job_id).alert_final_sent_at is not None:
            break


def test_eventbridge_partial_failure_is_retried_and_the_alert_sent_once(aws: AwsEnv) -> None:
    """PutEvents answers 200 with FailedEntryCount 1: the alert did not reach the bus. It is
    not marked sent, so the retry sends it; consumers see it exactly once."""
    job_id, event = uploaded(aws)
    aws.run_starter(event)
    refused = inject_answer(
        aws,
        "events",
        "PutEvents",
        {
            "FailedEntryCount": 1,
            "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "injected"}],
        },
        times=2,
    )
    fake = classifier()
    assert aws.drain(fake, max_rounds=1) == []  # the attempt failed; the task stays queued
    job = aws.job(job_id)
    assert job.preliminary is not None and job.alert_preliminary_sent_at is None
    assert aws.alerts() == []
    run_to_done(aws, job_id, event, fake)
    assert len(refused) == 2
    converged(aws, job_id, fake)


_DYNAMODB_FAULTS = [
    ("UpdateItem", "ProvisionedThroughputExceededException", 400),
    ("UpdateItem", "ThrottlingException", 400),
    ("UpdateItem", "InternalServerError", 500),
    ("UpdateItem", "timeout", 0),
]


@pytest.mark.parametrize(
    ("where", "operation", "code", "status"),
    [("starter", *fault) for fault in _DYNAMODB_FAULTS]
    + [("audio_stage", *fault) for fault in _DYNAMODB_FAULTS]
    + [("finalize", *fault) for fault in _DYNAMODB_FAULTS]
    + [
        ("audio_stage", "GetItem", "ServiceUnavailable", 503),
        ("finalize", "GetItem", "timeout", 0),
    ],
)
def test_dynamodb_throttling_errors_and_timeouts_are_retried_to_one_outcome(
    aws: AwsEnv, where: str, operation: str, code: str, status: int
) -> None:
    """DynamoDB refuses or times out at one step of the flow: the step raises (a transient
    error for the caller's retry), nothing is half-written that the retry cannot finish."""
    job_id, event = uploaded(aws)
    fake = classifier()
    if where != "starter":
        aws.run_starter(event)
    if where == "finalize":
        aws.drain(fake)

    def inject() -> list[Any]:
        if code == "timeout":
            return inject_timeout(aws, "dynamodb", operation, times=2)
        return aws.inject_error("dynamodb", operation, code, status=status, times=2)

    injected = inject()
    if where == "starter":
        with pytest.raises(RecordsFailed):
            aws.run_starter(event)
    elif where == "audio_stage":
        assert aws.drain(fake, max_rounds=1) == []
    else:
        with pytest.raises(TransientError):
            aws.deliver_transcribe_event(aws.complete_transcription(job_id, TEXT), fake)
    assert injected
    run_to_done(aws, job_id, event, fake)
    converged(aws, job_id, fake)


@pytest.mark.parametrize("fails", [1, 3])
def test_sqs_send_failures_in_the_starter_are_retried(aws: AwsEnv, fails: int) -> None:
    """SendMessage of the audio-stage task fails: the starter's attempt fails (Lambda
    retries the S3 event); no job is left without its task."""
    job_id, event = uploaded(aws)
    failing = aws.inject_error("sqs", "SendMessage", "ServiceUnavailable", status=503, times=fails)
    for _ in range(fails):
        with pytest.raises(RecordsFailed):
            aws.run_starter(event)
        assert aws.queued_tasks() == []
    assert aws.job(job_id).status is JobStatus.RECEIVED and aws.transcribe_jobs() == []
    (retry,) = aws.run_starter(event)["records"]
    assert (retry["action"], retry["transcribe"]) == ("accepted", "started")
    assert len(failing) == fails
    fake = classifier()
    run_to_done(aws, job_id, event, fake)
    converged(aws, job_id, fake)


def test_sqs_send_failure_in_the_sweeper_is_retried_by_the_next_sweep(
    aws: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.integration.conftest import configure

    configure(monkeypatch, TRANSCRIBE_POLICY="gated")  # the job waits RECEIVED for its stage
    job_id, event = uploaded(aws)
    aws.run_starter(event)
    aws.purge_work_queue()  # the audio-stage task is lost
    aws.age(job_id, 301)
    aws.inject_error("sqs", "SendMessage", "InternalError", status=500, times=1)
    with pytest.raises(TransientError):
        aws.run_sweeper()
    assert aws.job(job_id).sweep_count == 0  # not marked: the next sweep tries again
    assert aws.run_sweeper()["audio_stage_sent"] == 1
    fake = classifier()
    run_to_done(aws, job_id, event, fake)
    converged(aws, job_id, fake)


def test_two_sweeper_runs_at_once_converge(aws: AwsEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second sweep runs while the first is between its task and its mark (a schedule
    overlapping a slow run): both re-drive the same stuck jobs; the duplicated tasks change
    nothing."""
    import alertfusion.pipeline.sweeper as sweeper
    from alertfusion.pipeline import sweep
    from tests.integration.conftest import configure

    configure(monkeypatch, TRANSCRIBE_POLICY="gated")  # a lost audio stage leaves it RECEIVED
    lost, event = uploaded(aws)
    aws.run_starter(event)
    aws.purge_work_queue()  # its audio-stage task is lost
    transcribing, other = uploaded(aws)
    aws.run_starter(other)
    fake = classifier()
    aws.drain(fake)
    aws.complete_transcription(transcribing, TEXT)  # its completion event is lost
    for job_id in (lost, transcribing):
        aws.age(job_id, 301)

    real = sweeper._send_task
    nested: list[Any] = []
    overlapping: list[bool] = []

    def send_then_overlap(ctx: Any, task: Any) -> None:
        real(ctx, task)
        if not overlapping:
            overlapping.append(True)
            nested.append(sweep())  # the overlapping run, between this task and its mark

    monkeypatch.setattr(sweeper, "_send_task", send_then_overlap)
    first = sweep()
    (second,) = nested
    # both re-drove the job the first was marking; the second re-drove the other too, and
    # its mark moved that job out of the first's reach
    assert (first.finalize_sent, second.finalize_sent, second.audio_stage_sent) == (1, 1, 1)
    tasks = [t["type"] for t in aws.queued_tasks()]
    assert sorted(tasks) == ["audio_stage", "finalize", "finalize"]
    aws.drain(fake)
    for job_id in (lost, transcribing):
        if aws.job(job_id).status is not JobStatus.DONE:
            aws.deliver_transcribe_event(aws.complete_transcription(job_id, TEXT), fake)
    for job_id in (lost, transcribing):
        job = aws.job(job_id)
        assert job.status is JobStatus.DONE and job.preliminary and job.final
    assert sorted(aws.transcribe_jobs()) == sorted(PREFIX + j for j in (lost, transcribing))
    alert_ids = aws.alert_ids()
    assert len(alert_ids) == len(set(alert_ids)) == 4
    assert len(fake.text_calls) == 2  # one fused verdict each, whatever the duplicates


def test_a_mark_refused_after_the_alert_went_out_is_retried_not_resent(aws: AwsEnv) -> None:
    """DynamoDB throttles the alert's mark after PutEvents succeeded: the mark is retried in
    place (a failed invocation would send the alert again)."""
    job_id, event = uploaded(aws)
    aws.run_starter(event)

    def the_mark(request: dict[str, Any]) -> bool:
        body = request["body"]
        return b"alert_preliminary_sent_at" in (body if isinstance(body, bytes) else body.encode())

    refused = aws.inject_error(
        "dynamodb", "UpdateItem", "ProvisionedThroughputExceededException", times=3, when=the_mark
    )
    fake = classifier()
    (out,) = aws.drain(fake)
    assert out.alerts_sent == ("preliminary",) and len(refused) == 3
    assert aws.alert_ids() == [f"{job_id}:preliminary"]
    assert aws.job(job_id).alert_preliminary_sent_at is not None
