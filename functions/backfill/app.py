"""Backfill Lambda (zip): the Lambda steps of the backfill state machine, by ``action``:
``admit`` a batch of listed objects as jobs, ``check`` them until they are final,
``summarize`` the run (alertfusion.backfill.batch).

What raises is transient (the state machine retries ``TransientError`` and Lambda's own
errors with backoff) or a malformed event (the step fails; the run's failure tolerance and
redrive take over).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from alertfusion.backfill.batch import admit, check, summarize
from alertfusion.errors import InputError, ReasonCode
from alertfusion.observability import logger, metrics

_ACTIONS = {"admit": admit, "check": check, "summarize": summarize}


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    action = event.get("action")
    step = _ACTIONS.get(action) if isinstance(action, str) else None
    if step is None:
        raise InputError(
            f"unknown backfill action {action!r} (admit, check, summarize)",
            code=ReasonCode.INVALID_INPUT,
        )
    metrics.add_metric(name="BackfillSteps", unit=MetricUnit.Count, value=1)
    return step(event)
