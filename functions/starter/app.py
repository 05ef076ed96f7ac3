"""Starter Lambda: S3 ``ObjectCreated`` under ``uploads/`` → job record, audio-stage task,
Transcribe job (alertfusion.pipeline.starter.handle_upload, once per record)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import S3Event, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from alertfusion.observability import logger, metrics
from alertfusion.pipeline.starter import handle_upload


class RecordsFailed(Exception):
    """Some records hit transient trouble: Lambda retries the whole event, and the records
    already handled are no-ops the second time."""


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@event_source(data_class=S3Event)
def handler(event: S3Event, context: LambdaContext) -> dict[str, Any]:
    outcomes: list[dict[str, Any]] = []
    failures: list[Exception] = []
    # every record on its own: one bad record must not stop the others
    for record in event.records:
        try:
            outcomes.append(handle_upload(record).as_dict())
        except Exception as exc:
            logger.exception("record failed", extra={"raw_key": record.s3.get_object.key})
            failures.append(exc)
    metrics.add_metric(name="UploadRecords", unit=MetricUnit.Count, value=len(outcomes))
    if failures:
        metrics.add_metric(name="UploadRecordsFailed", unit=MetricUnit.Count, value=len(failures))
        raise RecordsFailed(
            f"{len(failures)} of {len(outcomes) + len(failures)} records failed"
        ) from failures[0]
    return {"records": outcomes}
