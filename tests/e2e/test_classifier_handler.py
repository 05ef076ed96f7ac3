"""The classifier handler as Lambda drives it: SQS batches with partial failures, EventBridge
events, audio the engine refuses, and events it is not wired for."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest

from alertfusion.errors import InputError, ReasonCode
from alertfusion.jobs import JobStatus
from alertfusion.keys import new_job_id
from alertfusion.tasks import AudioStageTask, encode_task
from devstack.handlers import LambdaContext
from devstack.stack import LocalStack
from functions.classifier.app import handler
from tests.corpus.bad_audio import float32_wav
from tests.e2e.conftest import sample

pytestmark = pytest.mark.e2e


def test_a_bad_message_in_a_batch_is_retried_alone_then_dead_lettered(
    make_stack: Callable[..., LocalStack],
) -> None:
    stack = make_stack(work_batch_size=3, max_receive_count=2, visibility_timeout_s=1)
    job_id = new_job_id()
    stack.upload(f"uploads/{job_id}.wav", sample("ko-help-16k.wav"))
    stack.wait_until_final([job_id])
    stack.wait_idle()
    stack.pause("work")
    sqs, work = stack.client("sqs"), stack.queues["work"]
    unknown = new_job_id()
    for body in (
        encode_task(AudioStageTask(job_id=job_id)),  # a redelivery: changes nothing
        '{"type": "audio_stage", "job_id": "../../etc/passwd"}',  # no producer writes this
        encode_task(AudioStageTask(job_id=unknown)),  # a job the table does not hold
    ):
        sqs.send_message(QueueUrl=work, MessageBody=body)
    before = len(stack.invocations)
    stack.resume("work")

    stack.wait_for(lambda: stack.queue_depth("work-dlq") == 1, timeout=30)
    stack.wait_idle()

    runs = [i for i in stack.invocations[before:] if i.trigger == "work-queue"]
    first = runs[0]
    assert len(first.job_ids) == 3 and first.ok
    failed = first.response["batchItemFailures"]
    assert len(failed) == 1  # only the malformed message comes back
    # afterwards only that message is delivered again (alone: the whole batch failed)
    assert all(not r.ok and len(r.job_ids) == 1 for r in runs[1:]) and len(runs) >= 2
    dead = sqs.receive_message(QueueUrl=stack.queues["work-dlq"])["Messages"][0]
    assert json.loads(dead["Body"])["job_id"] == "../../etc/passwd"
    job = stack.job(job_id)
    assert job.status is JobStatus.DONE  # the redelivered task changed nothing
    assert stack.job(unknown) is None


def test_audio_the_engine_cannot_use_ends_the_job_failed_with_its_reason(
    make_stack: Callable[..., LocalStack],
) -> None:
    """The header probe passes (a valid 1 s float WAV); the decoder finds a NaN sample."""
    stack = make_stack()
    job_id = new_job_id()
    audio = float32_wav(np.r_[np.zeros(8000), np.nan, np.zeros(8000)].astype(np.float32))
    stack.upload(f"uploads/{job_id}.wav", audio)

    job = stack.wait_until_final([job_id])[job_id]

    assert job.status is JobStatus.FAILED and job.failure_reason is ReasonCode.NOT_FINITE
    stack.wait_idle()
    # a permanent error is not retried: every invocation succeeded
    assert all(i.ok for i in stack.invocations), [i.error for i in stack.invocations]


def test_events_the_classifier_is_not_wired_for(make_stack: Callable[..., LocalStack]) -> None:
    make_stack()
    with pytest.raises(InputError) as refused:
        handler({"Records": [{"eventSource": "aws:s3"}]}, LambdaContext("local-classifier"))
    assert refused.value.code is ReasonCode.INVALID_INPUT
    other = {
        "version": "0",
        "id": "1",
        "detail-type": "Transcribe Job State Change",
        "source": "aws.transcribe",
        "account": "123456789012",
        "time": "2026-11-21T09:14:29Z",
        "region": "ap-northeast-2",
        "resources": [],
        "detail": {"TranscriptionJobName": "someone-else-1", "TranscriptionJobStatus": "COMPLETED"},
    }
    assert handler(other, LambdaContext("local-classifier")) == {"action": "ignored"}
