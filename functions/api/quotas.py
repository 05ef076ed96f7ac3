"""Per-user quotas: uploads and synchronous predictions per clock hour and per day (UTC),
counted in the jobs table.

One item per user, kind and day: ``quota#<sha256 of the owner>#<kind>#<YYYYMMDD>`` holding
the day's count and one count per hour (``h00`` … ``h23``), and the table's TTL attribute (a
day after the day ends). A request is admitted by one UpdateItem that adds 1 to both counts
on the condition that both are below their limits: DynamoDB applies each item write
atomically, so however many requests race, no more than the limit are ever admitted, and
a refused request counts nothing. The items have no ``status`` (the ``by_status`` index
stays sparse) and never look like a job id.

Fixed windows: a user may spend an hour's quota at 09:59 and the next at 10:00. That is the
price of one conditional write per request; the daily limit bounds it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from alertfusion.aws import error_code
from alertfusion.dynamodb import call_dynamodb, now_utc
from alertfusion.errors import AlertFusionError, ReasonCode

ITEM_PREFIX = "quota#"
QuotaKind = Literal["uploads", "predictions"]


@dataclass(frozen=True)
class QuotaLimits:
    per_hour: int
    per_day: int


def next_window(now: datetime, window: Literal["hour", "day"]) -> datetime:
    start = now.replace(minute=0, second=0, microsecond=0)
    if window == "day":
        start = start.replace(hour=0)
        return start + timedelta(days=1)
    return start + timedelta(hours=1)


class QuotaExceeded(AlertFusionError):
    """429 QUOTA_EXCEEDED with `Retry-After` (seconds until the full window ends)."""

    default_code = ReasonCode.QUOTA_EXCEEDED

    def __init__(
        self, kind: QuotaKind, window: Literal["hour", "day"], limit: int, retry_after: int
    ) -> None:
        super().__init__(
            f"quota reached: {limit} {kind} per {window}; the next {window} starts in "
            f"{retry_after} s",
            details={
                "http_headers": {"Retry-After": str(retry_after)},
                "kind": kind,
                "window": window,
                "limit": limit,
            },
        )
        self.retry_after = retry_after


class QuotaStore:
    def __init__(self, table_name: str, client: Any) -> None:
        self.table_name = table_name
        self._client = client

    @staticmethod
    def item_id(owner: str, kind: QuotaKind, moment: datetime) -> str:
        digest = hashlib.sha256(owner.encode("utf-8")).hexdigest()[:32]
        return f"{ITEM_PREFIX}{digest}#{kind}#{moment:%Y%m%d}"

    def take(
        self, owner: str, kind: QuotaKind, limits: QuotaLimits, *, now: datetime | None = None
    ) -> None:
        """Count one `kind` for `owner`, or raise QuotaExceeded (counting nothing)."""
        from botocore.exceptions import ClientError

        moment = now or now_utc()
        item_id = self.item_id(owner, kind, moment)
        hour = f"h{moment:%H}"
        expires = next_window(moment, "day") + timedelta(days=1)
        try:
            self._call(
                "update_item",
                TableName=self.table_name,
                Key={"job_id": {"S": item_id}},
                UpdateExpression="ADD #day :one, #hour :one SET #exp = if_not_exists(#exp, :exp)",
                ConditionExpression=(
                    "(attribute_not_exists(#day) OR #day < :day_limit) AND "
                    "(attribute_not_exists(#hour) OR #hour < :hour_limit)"
                ),
                ExpressionAttributeNames={"#day": "day", "#hour": hour, "#exp": "expires_at"},
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":day_limit": {"N": str(limits.per_day)},
                    ":hour_limit": {"N": str(limits.per_hour)},
                    ":exp": {"N": str(int(expires.timestamp()))},
                },
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            raise self._refusal(item_id, hour, kind, limits, moment) from None

    def _refusal(
        self, item_id: str, hour: str, kind: QuotaKind, limits: QuotaLimits, moment: datetime
    ) -> QuotaExceeded:
        item = (
            self._call(
                "get_item",
                TableName=self.table_name,
                Key={"job_id": {"S": item_id}},
                ConsistentRead=True,
            ).get("Item")
            or {}
        )
        day_count = int(item.get("day", {}).get("N", "0"))
        window: Literal["hour", "day"] = "day" if day_count >= limits.per_day else "hour"
        limit = limits.per_day if window == "day" else limits.per_hour
        seconds = (next_window(moment, window) - moment).total_seconds()
        return QuotaExceeded(kind, window, limit, max(1, int(seconds + 0.999)))

    def used(self, owner: str, kind: QuotaKind, moment: datetime) -> tuple[int, int]:
        """(this hour's, this day's) count of `owner`'s `kind` (tests, operators)."""
        item = (
            self._call(
                "get_item",
                TableName=self.table_name,
                Key={"job_id": {"S": self.item_id(owner, kind, moment)}},
                ConsistentRead=True,
            ).get("Item")
            or {}
        )
        hour = int(item.get(f"h{moment:%H}", {}).get("N", "0"))
        return hour, int(item.get("day", {}).get("N", "0"))

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        return call_dynamodb(self._client, self.table_name, operation, **kwargs)
