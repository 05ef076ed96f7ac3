"""What the pipeline writes to its logs: EMF metrics (verdicts by label, latencies, failures
by reason) and structured logs with job id and stage, never transcript text."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from alertfusion.keys import new_job_id
from alertfusion.observability import logger
from tests.conftest import FIXTURES, SAMPLES
from tests.integration.conftest import AwsEnv
from tests.pipeline_doubles import FakeClassifier

pytestmark = pytest.mark.integration

SECRET = "비밀번호는 일이삼사 입니다"  # a transcript that must never reach the logs


def json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def metrics(lines: list[dict[str, Any]]) -> list[tuple[str, dict[str, str]]]:
    found: list[tuple[str, dict[str, str]]] = []
    for line in lines:
        for directive in line.get("_aws", {}).get("CloudWatchMetrics", []):
            dims = {d: line[d] for group in directive["Dimensions"] for d in group}
            found.extend((m["Name"], dims) for m in directive["Metrics"])
    return found


def run_flows(aws: AwsEnv) -> str:
    job_id = new_job_id()
    key = f"uploads/{job_id}.wav"
    aws.put(key, (SAMPLES / "ko-help-16k.wav").read_bytes())
    aws.run_starter(aws.upload_event(key))
    fake = FakeClassifier(audio_label="theft", text_labels={"비밀": "robbery"})
    aws.drain(fake)
    aws.deliver_transcribe_event(aws.complete_transcription(job_id, SECRET), fake)
    short = f"uploads/{new_job_id()}.wav"
    aws.put(short, (FIXTURES / "audio" / "short-0.3s.wav").read_bytes())
    aws.run_starter(aws.upload_event(short))
    return job_id


@contextlib.contextmanager
def captured_output() -> Iterator[io.StringIO]:
    """Everything the pipeline prints: EMF lines go to stdout, and Powertools' Logger holds
    the stdout of the moment it was created, so its handler is pointed here too."""
    buffer = io.StringIO()
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    previous = handler.setStream(buffer)
    try:
        with contextlib.redirect_stdout(buffer):
            yield buffer
    finally:
        if previous is not None:
            handler.setStream(previous)


def test_metrics_and_logs(aws: AwsEnv) -> None:
    with captured_output() as buffer:
        job_id = run_flows(aws)
    out = buffer.getvalue()
    assert SECRET not in out and "비밀" not in out
    lines = json_lines(out)
    emitted = metrics(lines)
    assert (
        "Verdicts",
        {"stage": "preliminary", "label": "theft", "service": "alertfusion-tests"},
    ) in emitted
    assert (
        "Verdicts",
        {"stage": "final", "label": "robbery", "service": "alertfusion-tests"},
    ) in emitted
    assert (
        "JobsFailed",
        {"reason": "TOO_SHORT", "stage": "starter", "service": "alertfusion-tests"},
    ) in emitted
    names = {name for name, _ in emitted}
    assert {
        "UploadToVerdictMs",
        "StageDurationMs",
        "EmergencyAlertsSent",
        "UploadRecords",
    } <= names
    logs = [line for line in lines if "level" in line]
    recorded = [line for line in logs if line["message"] == "final verdict recorded"]
    assert recorded and recorded[0]["job_id"] == job_id and recorded[0]["stage"] == "finalize"
    assert all("function_request_id" in line for line in logs if line.get("stage") == "starter")
