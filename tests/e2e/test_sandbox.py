"""Handlers in sandbox processes of their own (devstack.sandbox): the same verdicts as in
this process, their inference timed there, and a sandbox that dies is Lambda's own error."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from alertfusion.jobs import JobStatus
from alertfusion.keys import new_job_id
from devstack.sandbox import Sandbox, SandboxError
from devstack.stack import LocalStack
from devstack.transcribe import StandInOutcome
from tests.e2e.conftest import TRANSCRIPTS, sample

pytestmark = pytest.mark.e2e


def test_a_sandboxed_classifier_gives_the_verdicts_this_process_gives(
    make_stack: Callable[..., LocalStack], tiny_bundle: Path
) -> None:
    from alertfusion.engine import Engine

    stack = make_stack(env={"FUSION_GATE": "none"}, sandboxed=("backfill", "classifier"))
    warm = stack.warm()
    assert warm["engine_ms"] > 0
    audio, text = sample("ko-help-16k.wav"), TRANSCRIPTS["ko-help-16k.wav"]
    job_id = new_job_id()
    stack.standin.plan(job_id, StandInOutcome.completed(text))
    stack.upload(f"uploads/{job_id}.wav", audio)

    job = stack.wait_until_final([job_id])[job_id]

    engine = Engine.from_bundle(tiny_bundle, gate="none")
    fused = engine.classify(audio, text=text, filename=f"{job_id}.wav")
    assert job.status is JobStatus.DONE and job.final is not None
    assert job.final.decided_by == "fusion"
    assert job.final.probabilities == pytest.approx(fused.probabilities, abs=1e-5)
    stack.wait_idle()
    classifier_runs = [i for i in stack.invocations if i.function == "classifier"]
    assert sorted(i.trigger for i in classifier_runs) == ["transcribe-event", "work-queue"]
    assert all(i.ok for i in classifier_runs), [i.error for i in classifier_runs]
    # timed in the sandbox: this process's engine wrapper never ran
    assert all(i.inference_ms > 0 for i in classifier_runs)


def test_a_sandbox_answers_the_handlers_errors_and_starts_again_after_dying(
    make_stack: Callable[..., LocalStack],
) -> None:
    make_stack()  # the environment a sandbox inherits: moto's endpoint, the pipeline's names
    sandbox = Sandbox("backfill")
    try:
        answer = sandbox.invoke({"action": "nothing"})
        assert answer["ok"] is False and answer["error_type"] == "InputError"
        assert "unknown backfill action" in answer["error"]
        process = sandbox._process
        assert process is not None
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        # the next invocation finds it dead and starts another
        again = sandbox.invoke({"action": "nothing"})
        assert again["error_type"] == "InputError"
        assert sandbox._process is not None and sandbox._process.pid != process.pid
    finally:
        sandbox.stop()
    assert sandbox._process is None
    # stopped, it starts no process again (an invocation while the stack stops) until reopened
    with pytest.raises(SandboxError, match="stopped"):
        sandbox.invoke({"action": "nothing"})
    assert sandbox._process is None
