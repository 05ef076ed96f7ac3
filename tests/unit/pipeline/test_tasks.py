"""Work-queue task messages."""

from __future__ import annotations

import json

import pytest

from alertfusion.errors import InputError, ReasonCode
from alertfusion.tasks import AudioStageTask, FinalizeTask, encode_task, parse_task

pytestmark = pytest.mark.unit

JOB = "01JD7Q3K8W2S9V4M6T1R5Y0ZXB"


def test_round_trip() -> None:
    for task in (
        AudioStageTask(job_id=JOB),
        FinalizeTask(
            job_id=JOB, transcribe_status="FAILED", failure_reason="bad media", origin="sweeper"
        ),
    ):
        assert parse_task(encode_task(task)) == task


def test_newer_producers_may_add_fields() -> None:
    body = json.dumps({"type": "audio_stage", "job_id": JOB, "v": 1, "priority": "high"})
    task = parse_task(body)
    assert task == AudioStageTask(job_id=JOB, sent_at=task.sent_at)


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "{}",
        json.dumps({"type": "transcode", "job_id": JOB}),
        json.dumps({"type": "audio_stage", "job_id": "../../etc/passwd"}),
        json.dumps({"type": "finalize", "job_id": JOB}),
        json.dumps({"type": "finalize", "job_id": JOB, "transcribe_status": "IN_PROGRESS"}),
        json.dumps({"type": "audio_stage", "job_id": JOB, "v": 2}),
    ],
)
def test_malformed_tasks_are_invalid_input(body: str) -> None:
    with pytest.raises(InputError) as err:
        parse_task(body)
    assert err.value.code is ReasonCode.INVALID_INPUT and err.value.permanent
