"""Powertools Logger and Metrics shared by the pipeline's handlers and core functions.

Service name and metrics namespace come from ``POWERTOOLS_SERVICE_NAME`` and
``POWERTOOLS_METRICS_NAMESPACE`` (set per function by the infrastructure). Metrics are
emitted one EMF line each (``single_metric``) so that dimensions such as the verdict
label or the failure reason never leak into unrelated metrics.

Tracing is Lambda's active tracing (the stacks set it on every function and the API stage):
Lambda records each invocation's init, run and overhead with no SDK in the function. The
X-Ray SDK (what Powertools' Tracer wraps) reaches end of support on 2027-02-25, and in a
sandbox it imported and patched botocore and its other targets at start-up; in-function
spans, if ever needed, go through OpenTelemetry (opentelemetry-api is already in the
runtime, FastAPI and Starlette depend on it) with the ADOT layer or collector.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, single_metric
from aws_lambda_powertools.metrics import MetricUnit

DEFAULT_NAMESPACE = "alertfusion"

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "alertfusion"))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", DEFAULT_NAMESPACE))


def _emit(name: str, unit: MetricUnit, value: float, dimensions: dict[str, str]) -> None:
    namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", DEFAULT_NAMESPACE)
    try:
        with single_metric(name=name, unit=unit, value=value, namespace=namespace) as metric:
            for key, dim in dimensions.items():
                metric.add_dimension(name=key, value=dim)
    except Exception:  # a metric must never fail the work it measures
        logger.warning("metric not emitted", extra={"metric": name})


def count(name: str, **dimensions: str) -> None:
    _emit(name, MetricUnit.Count, 1, dimensions)


def milliseconds(name: str, value: float, **dimensions: str) -> None:
    _emit(name, MetricUnit.Milliseconds, max(0.0, float(value)), dimensions)


def log_extra(**values: Any) -> dict[str, Any]:
    """Structured log fields without None values."""
    return {k: v for k, v in values.items() if v is not None}
