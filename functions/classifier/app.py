"""Classifier Lambda (container image): work-queue tasks and "Transcribe Job State Change"
events → preliminary and final verdicts (alertfusion.pipeline), dispatched on the event shape.

* An SQS event (``Records`` with ``eventSource: aws:sqs``) of work-queue tasks: each record's
  task (``audio_stage`` → :func:`run_audio_stage`, ``finalize`` → :func:`finalize_job`,
  ``reclassify`` → :func:`reclassify_job`) runs
  on its own; a record that raises is reported in ``batchItemFailures`` (Powertools batch
  utility), so only it is redelivered, and after the queue's ``maxReceiveCount`` it moves
  to the dead-letter queue.
* An EventBridge "Transcribe Job State Change" event (asynchronous invocation): the job's
  final verdict (:func:`finalize_job`). An exception fails the invocation, so Lambda's
  asynchronous retries (then the on-failure destination) take over.

Permanent input problems (undecodable audio, a vanished upload) end the job FAILED inside
the pipeline functions and return normally; what still raises here is transient (throttling,
timeouts, a bundle that cannot load) or a malformed message, and is retried. The engine
comes from ``alertfusion.engine.get_engine()`` on first use, never at import, unless the
stack asks for it during init (SnapStart, provisioned concurrency: alertfusion.runtime_hooks).
"""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from alertfusion.errors import InputError, ReasonCode
from alertfusion.observability import logger, metrics
from alertfusion.pipeline.context import get_context
from alertfusion.pipeline.outcomes import StageOutcome
from alertfusion.pipeline.stages import finalize_job, reclassify_job, run_audio_stage
from alertfusion.runtime_hooks import prepare_sandbox
from alertfusion.tasks import AudioStageTask, FinalizeTask, parse_task
from alertfusion.transcribe import is_job_state_change, parse_job_state_change

if TYPE_CHECKING:
    from alertfusion.protocols import Classifier

_processor = BatchProcessor(event_type=EventType.SQS)
_frozen = False


def get_classifier() -> Classifier:
    """The process-wide inference engine (loads the bundle on first use).

    Once it exists, the sandbox's long-lived objects (botocore's service models, pydantic
    schemas, the engine) are moved out of the cyclic garbage collector's reach
    (``gc.freeze``): a full collection over them is long, and would otherwise land inside
    some later invocation.
    """
    global _frozen
    from alertfusion.engine import get_engine

    engine = get_engine()
    if not _frozen:
        gc.freeze()
        _frozen = True
    return engine


def _is_sqs_event(event: dict[str, Any]) -> bool:
    records = event.get("Records")
    return (
        isinstance(records, list)
        and bool(records)
        and all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records)
    )


def handle_task(record: SQSRecord) -> dict[str, Any]:
    """One work-queue message: parse the task, run its stage. Raising fails the record."""
    try:
        task = parse_task(record.body)
    except InputError:
        # A message no producer of this pipeline writes: retried, then dead-lettered, where
        # operators see it (dropping it silently could hide a lost job).
        logger.exception("malformed work-queue message", extra={"message_id": record.message_id})
        metrics.add_metric(name="MalformedTasks", unit=MetricUnit.Count, value=1)
        raise
    with logger.append_context_keys(job_id=task.job_id, task=task.type, origin=task.origin):
        try:
            outcome: StageOutcome
            if isinstance(task, AudioStageTask):
                outcome = run_audio_stage(task.job_id, get_classifier())
            elif isinstance(task, FinalizeTask):
                outcome = finalize_job(
                    task.job_id,
                    task.transcribe_status,
                    get_classifier(),
                    failure_reason=task.failure_reason,
                )
            else:
                outcome = reclassify_job(task.job_id, task.bundle_version, get_classifier())
        except Exception:
            logger.exception("task failed; it will be redelivered")
            metrics.add_metric(name="TaskFailures", unit=MetricUnit.Count, value=1)
            raise
    return outcome.as_dict()


def _handle_transcribe_event(event: dict[str, Any]) -> dict[str, Any]:
    prefix = get_context().settings.transcribe_job_prefix
    change = parse_job_state_change(event, prefix)
    if change is None:
        # the rule matches only this pipeline's finished jobs: anything else is not ours
        detail = event.get("detail") or {}
        logger.warning(
            "Transcribe event ignored (not a finished job of this pipeline)",
            extra={
                "transcribe_job": detail.get("TranscriptionJobName"),
                "transcribe_status": detail.get("TranscriptionJobStatus"),
            },
        )
        return {"action": "ignored"}
    with logger.append_context_keys(job_id=change.job_id, transcribe_job=change.job_name):
        outcome = finalize_job(
            change.job_id,
            change.status,
            get_classifier(),
            failure_reason=change.failure_reason,
        )
    return outcome.as_dict()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if _is_sqs_event(event):
        metrics.add_metric(name="WorkRecords", unit=MetricUnit.Count, value=len(event["Records"]))
        return dict(
            process_partial_response(
                event=event, record_handler=handle_task, processor=_processor, context=context
            )
        )
    if is_job_state_change(event):
        metrics.add_metric(name="TranscribeEvents", unit=MetricUnit.Count, value=1)
        return _handle_transcribe_event(event)
    # Not an event this function is wired to: fail loudly (the invocation lands in the
    # on-failure destination) rather than guess.
    metrics.add_metric(name="UnknownEvents", unit=MetricUnit.Count, value=1)
    raise InputError(
        "the classifier takes work-queue (SQS) events and Transcribe Job State Change events; "
        f"got keys {sorted(event)[:10]}",
        code=ReasonCode.INVALID_INPUT,
    )


# SnapStart snapshots / provisioned sandboxes: the engine loads during init (off by default).
prepare_sandbox(get_classifier)
