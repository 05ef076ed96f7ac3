"""Sweeper Lambda (scheduled): finishes jobs whose events were lost, times out the rest
(alertfusion.pipeline.sweeper.sweep)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from alertfusion.observability import logger, metrics
from alertfusion.pipeline.sweeper import sweep


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@event_source(data_class=EventBridgeEvent)
def handler(event: EventBridgeEvent, context: LambdaContext) -> dict[str, Any]:
    report = sweep()
    metrics.add_metric(name="SweptJobs", unit=MetricUnit.Count, value=report.checked)
    return report.as_dict()
