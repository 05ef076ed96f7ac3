"""Issue 4's faults through the whole local stack with the real engine, then the counts:
every accepted upload ends DONE or FAILED (0 lost), 0 duplicated Transcribe jobs, 0
duplicated alerts, 0 verdicts written twice."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from alertfusion import notify
from alertfusion.errors import ReasonCode
from alertfusion.jobs import JobStatus, JobStore
from alertfusion.keys import derive_job_id, new_job_id
from devstack.stack import LocalStack
from devstack.transcribe import StandInOutcome
from tests.e2e.conftest import TRANSCRIPTS, fixture_audio, sample

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LIMIT = 850_000  # accepts the 803 kB 25 s sample, refuses the 915 kB stereo one
CANDIDATES = ["ko-help-16k.wav", "ko-regular-22k.wav", "ko-violence-long-16k.wav"]


def crash_once_for(
    monkeypatch: pytest.MonkeyPatch, target: Any, name: str, job_id: str, crashes: list[str]
) -> None:
    """The first call of `target.name` that concerns `job_id` raises (a process dying after
    part of its work); later calls run normally."""
    original = getattr(target, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if job_id not in crashes and job_id in json.dumps([repr(a) for a in args]):
            crashes.append(job_id)
            raise RuntimeError(f"injected crash in {name}")
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, wrapper)


def emergency_sample(bundle: Path) -> str:
    """A shipped sample whose audio-only verdict (tiny untrained weights, no gate) is an
    emergency, so that the alert path can be crashed."""
    from alertfusion.engine import Engine

    engine = Engine.from_bundle(bundle, gate="none")
    for name in CANDIDATES:
        if engine.classify(sample(name)).is_emergency:
            return name
    pytest.fail(f"no sample of {CANDIDATES} is an emergency for this bundle: cannot crash alerts")


def emitted_verdicts(stdout: str) -> Counter[str]:
    """EMF ``Verdicts`` metrics by stage: one is emitted each time a verdict is written."""
    counts: Counter[str] = Counter()
    for line in stdout.splitlines():
        if line.startswith('{"_aws"') and '"Verdicts"' in line:
            counts[json.loads(line)["stage"]] += 1
    return counts


def test_every_upload_ends_done_or_failed_and_nothing_is_doubled(
    make_stack: Callable[..., LocalStack],
    tiny_bundle: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stack = make_stack(
        env={"MAX_UPLOAD_BYTES": str(LIMIT), "FUSION_GATE": "none"},
        stuck_after_seconds=1,
        sweep_interval_s=0.5,
        visibility_timeout_s=1,
    )
    alarming = emergency_sample(tiny_bundle)
    text = {name: TRANSCRIPTS[name] for name in CANDIDATES}
    plan = {
        "reverse": "ko-help-16k.wav",
        "normal": "ko-help-16k.wav",
        "regular": "ko-regular-22k.wav",
        "long": "ko-violence-long-16k.wav",
        "duplicated": "ko-help-16k.wav",
        "transcribe_failed": "ko-help-16k.wav",
        "event_lost": "ko-regular-22k.wav",
        "crash_before_alert": alarming,
        "crash_before_final": "ko-regular-22k.wav",
    }
    jobs = {name: new_job_id() for name in plan}
    for name, job_id in jobs.items():
        if name == "transcribe_failed":
            outcome = StandInOutcome.failed("injected: the audio could not be transcribed")
        elif name == "event_lost":
            outcome = StandInOutcome.completed(text[plan[name]], emit_event=False)
        elif name == "duplicated":
            outcome = StandInOutcome.completed(text[plan[name]], event_copies=3)
        else:
            outcome = StandInOutcome.completed(text[plan[name]])
        stack.standin.plan(job_id, outcome)
    crashes: list[str] = []
    crash_once_for(monkeypatch, notify, "send_emergency", jobs["crash_before_alert"], crashes)
    crash_once_for(monkeypatch, JobStore, "finish", jobs["crash_before_final"], crashes)

    # 1. reverse order: the Transcribe event overtakes the audio-stage task
    stack.pause("work")
    stack.upload(f"uploads/{jobs['reverse']}.wav", sample(plan["reverse"]))
    stack.wait_for(lambda: getattr(stack.job(jobs["reverse"]), "status", None) is JobStatus.DONE)
    assert stack.job(jobs["reverse"]).preliminary is None
    stack.resume("work")

    # 2. everything else at once, with throttling on the first StartTranscriptionJob calls
    stack.throttle_transcribe(3)
    for name, job_id in jobs.items():
        if name != "reverse":
            stack.upload(f"uploads/{job_id}.wav", sample(plan[name]))
    duplicated_key = f"uploads/{jobs['duplicated']}.wav"
    stack.replay_upload_event(duplicated_key)  # S3 delivers at least once
    stack.replay_upload_event(duplicated_key)
    hand_key = "uploads/신고 녹음+2.wav"
    stack.upload(hand_key, sample("ko-help-16k.wav"))
    etag = stack.client("s3").head_object(Bucket=stack.config.bucket, Key=hand_key)["ETag"]
    jobs["hand_dropped"] = derive_job_id(hand_key, version_id=None, etag=etag, sequencer=None)
    refused = {
        "notes": ("uploads/notes.txt", b"not audio", "text/plain"),
        "short": (f"uploads/{new_job_id()}.wav", fixture_audio("short-0.3s.wav"), "audio/wav"),
        "big": (f"uploads/{new_job_id()}.wav", sample("ko-robbery-44k-stereo.wav"), "audio/wav"),
    }
    for key, data, content_type in refused.values():
        stack.upload(key, data, content_type)

    # 3. wait until every job is final and every queue is empty
    accepted = set(jobs.values())
    stack.wait_until_final(sorted(accepted), timeout=120)
    stack.wait_for(lambda: len(stack.all_jobs()) == len(accepted) + len(refused), timeout=30)
    stack.wait_for(lambda: stack.job(jobs["reverse"]).preliminary is not None, timeout=30)
    stack.wait_idle(timeout=30)

    # count
    items = stack.all_jobs()
    statuses = Counter(item["status"]["S"] for item in items)
    assert statuses == {"DONE": len(accepted), "FAILED": len(refused)}  # 0 lost, 0 pending
    for job_id in accepted:
        job = stack.job(job_id)
        assert job.status is JobStatus.DONE and job.preliminary and job.final, job_id
    failed = {
        stack.job(i["job_id"]["S"]).failure_reason for i in items if i["status"]["S"] == "FAILED"
    }
    assert failed == {
        ReasonCode.UNSUPPORTED_FORMAT,
        ReasonCode.TOO_SHORT,
        ReasonCode.FILE_TOO_LARGE,
    }
    names = stack.transcribe_job_names()
    prefix = stack.config.transcribe_job_prefix
    assert sorted(names) == sorted(prefix + j for j in accepted)  # one each, none refused
    assert stack.throttled_calls == 3

    alert_ids = [a["detail"]["alert_id"] for a in stack.alerts()]
    assert len(alert_ids) == len(set(alert_ids)), "an alert was sent twice"
    expected = {
        f"{job_id}:{stage}"
        for job_id in accepted
        for stage in ("preliminary", "final")
        if getattr(stack.job(job_id), stage).is_emergency
    }
    assert set(alert_ids) == expected  # 0 lost alerts
    assert f"{jobs['crash_before_alert']}:preliminary" in expected

    verdicts = emitted_verdicts(capsys.readouterr().out)
    assert verdicts == {"preliminary": len(accepted), "final": len(accepted)}

    # the faults happened, and were recovered
    assert sorted(crashes) == sorted([jobs["crash_before_alert"], jobs["crash_before_final"]])
    errors = [i.error for i in stack.invocations if not i.ok]
    assert len(errors) == 2 and all("injected crash" in (e or "") for e in errors), errors
    reverse = stack.job(jobs["reverse"])
    assert reverse.final_at < reverse.preliminary_at
    lost = stack.job(jobs["event_lost"])
    assert lost.final.text_source == "transcribe"  # finished by the sweeper's finalize task
    swept = [
        job_id
        for i in stack.invocations
        if i.function == "sweeper" and i.ok
        for job_id in i.response["job_ids"].get("finalize_sent", [])
    ]
    assert jobs["event_lost"] in swept
    failed_job = stack.job(jobs["transcribe_failed"])
    assert failed_job.final.audio_only_reason is ReasonCode.TRANSCRIBE_FAILED
    for queue in ("work-dlq", "upload-events-dlq", "transcribe-events-dlq"):
        assert stack.queue_depth(queue) == 0, queue
    assert not stack.pump_errors and not stack.standin.errors
