"""DynamoDB calls with typed failures, the AttributeValue codec and the stored time format."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import (
    Clamped,
    Context,
    Decimal,
    DecimalException,
    Inexact,
    Overflow,
    Rounded,
    Underflow,
)
from typing import Any

from alertfusion.aws import error_code
from alertfusion.errors import ConfigError, TransientError

_THROTTLING = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)


def call_dynamodb(client: Any, table_name: str, operation: str, **kwargs: Any) -> dict[str, Any]:
    """One DynamoDB call on the jobs table, its failures typed: throttling, server errors and
    connection errors are `TransientError` (retry), a missing table is `ConfigError`; any
    other `ClientError` (a failed condition, say) is the caller's to handle."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        result: dict[str, Any] = getattr(client, operation)(**kwargs)
    except ClientError as exc:
        code = error_code(exc)
        if code in _THROTTLING:
            raise TransientError(f"DynamoDB {operation}: {code}") from exc
        if code == "ResourceNotFoundException":
            raise ConfigError(f"jobs table {table_name!r} not found") from exc
        raise
    except BotoCoreError as exc:  # connection errors, timeouts
        raise TransientError(f"DynamoDB {operation}: {type(exc).__name__}") from exc
    return result


# --- timestamps ----------------------------------------------------------------------------


def utc_iso(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and ``Z``: fixed width, so string order = time order."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_utc() -> datetime:
    return datetime.now(UTC)


# --- AttributeValue codec ------------------------------------------------------------------

#: DynamoDB's number range and precision (38 digits, 1E-130 to 1E+126), as boto3 checks it
_DYNAMODB_NUMBERS = Context(
    Emin=-128,
    Emax=126,
    prec=38,
    traps=[Clamped, Overflow, Inexact, Rounded, Underflow],
)


def to_attribute(value: Any) -> dict[str, Any]:
    """A plain JSON-like value as a DynamoDB AttributeValue, as boto3's TypeSerializer writes
    it (floats go through `Decimal(repr(x))`, so the stored number is the float's shortest
    repr). Written here rather than imported: `boto3.dynamodb.types` imports all of boto3 and
    s3transfer, about 15 ms of every cold start that reads a job. `None` inside a map is left
    out (an absent attribute); only the types a job record holds are accepted."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, int | float | Decimal):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("DynamoDB cannot store a non-finite number")
        try:
            number = _DYNAMODB_NUMBERS.create_decimal(
                value if isinstance(value, Decimal) else Decimal(repr(value))
            )
        except DecimalException as exc:
            raise ValueError(f"DynamoDB cannot store the number {value!r}") from exc
        if not number.is_finite():
            raise ValueError(f"DynamoDB cannot store the number {value!r}")
        return {"N": str(number)}
    if isinstance(value, dict):
        return {"M": {str(k): to_attribute(v) for k, v in value.items() if v is not None}}
    if isinstance(value, list | tuple):
        return {"L": [to_attribute(v) for v in value]}
    raise TypeError(f"a job record holds no {type(value).__name__}")


def from_attribute(attribute: dict[str, Any]) -> Any:
    """The plain value of a DynamoDB AttributeValue: numbers come back as `int` when integral,
    else `float`. Sets and binary values, which the job store never writes, are refused."""
    ((kind, value),) = attribute.items()
    if kind == "S":
        return value
    if kind == "N":
        number = Decimal(value)
        return int(number) if number == number.to_integral_value() else float(number)
    if kind == "BOOL":
        return bool(value)
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: from_attribute(v) for k, v in value.items()}
    if kind == "L":
        return [from_attribute(v) for v in value]
    raise TypeError(f"a job record holds no DynamoDB {kind!r} value")
