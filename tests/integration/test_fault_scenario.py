"""Many uploads, every fault at once, then count: every accepted upload ends DONE or
FAILED, no Transcribe job twice, no alert twice, no verdict written twice."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from alertfusion import notify
from alertfusion.errors import ReasonCode
from alertfusion.jobs import JobStatus, JobStore
from alertfusion.keys import new_job_id
from tests.conftest import FIXTURES, SAMPLES
from tests.integration.conftest import PREFIX, TABLE, AwsEnv, configure
from tests.pipeline_doubles import FakeClassifier

pytestmark = pytest.mark.integration

WAVS = {
    "help": (SAMPLES / "ko-help-16k.wav").read_bytes(),
    "regular": (SAMPLES / "ko-regular-22k.wav").read_bytes(),
}
BIG = (SAMPLES / "ko-robbery-44k-stereo.wav").read_bytes()  # 915 kB
SHORT = (FIXTURES / "audio" / "short-0.3s.wav").read_bytes()


def crash_first_call_for(
    monkeypatch: pytest.MonkeyPatch, target: Any, name: str, job_id: str
) -> None:
    original = getattr(target, name)
    crashed: list[bool] = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not crashed and job_id in json.dumps([repr(a) for a in args]):
            crashed.append(True)
            raise RuntimeError(f"injected crash in {name}")
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, wrapper)


def test_every_upload_ends_done_or_failed_with_nothing_doubled(
    aws: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, MAX_UPLOAD_BYTES="600000")
    fake = FakeClassifier(audio_label="help", text_labels={"도와": "help", "강도": "robbery"})
    plan = {
        "normal": "help",
        "regular": "regular",
        "duplicated": "help",
        "reverse": "help",
        "transcribe_failed": "help",
        "event_lost": "help",
        "throttled": "help",
        "crash_before_alert": "help",
        "crash_before_final": "help",
    }
    jobs = {name: new_job_id() for name in plan}
    events: dict[str, dict[str, Any]] = {}
    for name, job_id in jobs.items():
        key = f"uploads/{job_id}.wav"
        aws.put(key, WAVS[plan[name]])
        events[name] = aws.upload_event(key)
    refused = {
        "notes": ("uploads/notes.txt", b"hello", "text/plain"),
        "short": (f"uploads/{new_job_id()}.wav", SHORT, "audio/wav"),
        "big": (f"uploads/{new_job_id()}.wav", BIG, "audio/wav"),
    }
    for name, (key, data, content_type) in refused.items():
        aws.put(key, data, content_type=content_type)
        events[name] = aws.upload_event(key)

    # faults on the way in
    aws.inject_error("transcribe", "StartTranscriptionJob", "LimitExceededException", times=3)
    crash_first_call_for(monkeypatch, notify, "send_emergency", jobs["crash_before_alert"])
    crash_first_call_for(monkeypatch, JobStore, "finish", jobs["crash_before_final"])

    # S3: one event per upload, a duplicated one three times, all in one batch
    batch = {
        "Records": [r for name in ["throttled", *jobs, *refused] for r in events[name]["Records"]]
    }
    batch["Records"] += events["duplicated"]["Records"] * 2
    outcomes = aws.run_starter(batch)["records"]
    actions = Counter(o["action"] for o in outcomes)
    assert actions == {"accepted": len(jobs), "rejected": len(refused), "duplicate": 3}
    accepted = {o["job_id"] for o in outcomes if o["action"] == "accepted"}
    assert accepted == set(jobs.values())

    # the reverse-order job's audio-stage task is delayed until after its completion event
    held = aws.take_tasks(jobs["reverse"])
    assert [t["type"] for t in held] == ["audio_stage"]
    aws.drain(fake)  # a crashed attempt leaves its task queued; drain retries it

    # Transcribe finishes; EventBridge delivers (except the lost one), sometimes twice
    for name, job_id in jobs.items():
        if name == "event_lost":
            aws.complete_transcription(job_id, "도와주세요")
            continue
        if name == "transcribe_failed":
            event = aws.fail_transcription(job_id, "injected failure")
        else:
            text = "오늘 점심은 뭐 먹을까" if name == "regular" else "도와주세요"
            event = aws.complete_transcription(job_id, text)
        try:
            aws.deliver_transcribe_event(event, fake)
        except RuntimeError:
            aws.deliver_transcribe_event(event, fake)  # EventBridge's retry
        if name == "duplicated":
            aws.deliver_transcribe_event(event, fake)
    for task in held:
        aws.sqs.send_message(QueueUrl=aws.work_queue_url, MessageBody=json.dumps(task))
    aws.drain(fake)

    # the sweeper finishes what lost events left behind
    for job_id in jobs.values():
        if aws.job(job_id).status is not JobStatus.DONE:
            aws.age(job_id, 301)
    aws.run_sweeper()
    aws.drain(fake)

    # count
    items = aws.ddb.scan(TableName=TABLE)["Items"]
    statuses = Counter(item["status"]["S"] for item in items)
    assert statuses == {"DONE": len(jobs), "FAILED": len(refused)}  # 0 lost, 0 pending
    for job_id in jobs.values():
        job = aws.job(job_id)
        assert job.status is JobStatus.DONE and job.preliminary and job.final
    failed = {aws.job(o["job_id"]).failure_reason for o in outcomes if o["action"] == "rejected"}
    assert failed == {
        ReasonCode.UNSUPPORTED_FORMAT,
        ReasonCode.TOO_SHORT,
        ReasonCode.FILE_TOO_LARGE,
    }
    names = aws.transcribe_jobs()
    assert sorted(names) == sorted(PREFIX + j for j in jobs.values())  # one each, none for refused
    alert_ids = aws.alert_ids()
    assert len(alert_ids) == len(set(alert_ids))  # 0 duplicated alerts
    expected = {
        f"{job_id}:{stage}"
        for name, job_id in jobs.items()
        for stage in ("preliminary", "final")
        if (
            aws.job(job_id).preliminary if stage == "preliminary" else aws.job(job_id).final
        ).is_emergency  # type: ignore[union-attr]  # every job has both (asserted above)
    }
    assert set(alert_ids) == expected  # 0 lost alerts
    assert f"{jobs['regular']}:final" not in expected
    # inferences: one audio-only run per job (its preliminary verdict) plus the audio-only
    # final of the job whose Transcribe failed; one fused run per job with a transcript,
    # plus the recomputation of the job that crashed before its final write
    assert len(fake.audio_only_calls) == len(jobs) + 1
    assert len(fake.text_calls) == (len(jobs) - 1) + 1
