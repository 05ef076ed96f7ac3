"""`Idempotency-Key` records of `POST /uploads`, kept in the jobs table.

One item per key and caller: partition key ``idempotency#<sha256 of the key>`` (of the
caller's owner id and the key for a known caller: one user's key never finds another's job;
the client's string is never stored), the job id it made, a fingerprint of the request
body, and the table's TTL attribute. The items have no ``status``, so the ``by_status``
index stays sparse, and no job id looks like them (job ids are ULIDs).

A key is claimed with a conditional put: the first request wins and names the job; a
repeat with the same body gets the same job, even while the first is still running (both
write the same job record and presign the same key, so there is nothing to wait for);
a repeat with another body is 422 IDEMPOTENCY_CONFLICT. An expired item (TTL deletion lags
by up to days) counts as absent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from alertfusion.aws import error_code
from alertfusion.dynamodb import call_dynamodb, now_utc, utc_iso
from alertfusion.errors import AlertFusionError, ReasonCode, TransientError

ITEM_PREFIX = "idempotency#"


@dataclass(frozen=True)
class Claim:
    job_id: str
    #: True when an earlier request made the job
    replayed: bool


def fingerprint(payload: str) -> str:
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class IdempotencyStore:
    def __init__(self, table_name: str, client: Any, *, ttl_days: int) -> None:
        self.table_name = table_name
        self._client = client
        self._ttl = timedelta(days=ttl_days)

    @staticmethod
    def item_id(key: str, owner: str | None = None) -> str:
        """The item of `key` as `owner` uses it (None, "anonymous": nobody in particular)."""
        scoped = key if owner in (None, "anonymous") else f"{owner}\n{key}"
        return ITEM_PREFIX + hashlib.sha256(scoped.encode("utf-8")).hexdigest()

    def claim(
        self,
        key: str,
        body_fingerprint: str,
        new_job_id: str,
        *,
        owner: str | None = None,
        now: datetime | None = None,
    ) -> Claim:
        """The job of `owner`'s `key`: `new_job_id` if this call claimed the key, else the
        job the first request made (same body) or 422 IDEMPOTENCY_CONFLICT (another body)."""
        from botocore.exceptions import ClientError

        moment = now or now_utc()
        item_id = self.item_id(key, owner)
        for _ in range(2):
            try:
                self._call(
                    "put_item",
                    TableName=self.table_name,
                    Item={
                        "job_id": {"S": item_id},
                        "kind": {"S": "idempotency"},
                        "target_job_id": {"S": new_job_id},
                        "fingerprint": {"S": body_fingerprint},
                        "created_at": {"S": utc_iso(moment)},
                        "expires_at": {"N": str(int((moment + self._ttl).timestamp()))},
                    },
                    ConditionExpression="attribute_not_exists(job_id) OR expires_at < :now",
                    ExpressionAttributeValues={":now": {"N": str(int(moment.timestamp()))}},
                )
                return Claim(new_job_id, replayed=False)
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise
            item = self._call(
                "get_item",
                TableName=self.table_name,
                Key={"job_id": {"S": item_id}},
                ConsistentRead=True,
            ).get("Item")
            if item is None:
                continue  # expired and deleted between the two calls: claim it again
            if item["fingerprint"]["S"] != body_fingerprint:
                raise AlertFusionError(
                    "this Idempotency-Key was used with a different request body",
                    code=ReasonCode.IDEMPOTENCY_CONFLICT,
                )
            return Claim(item["target_job_id"]["S"], replayed=True)
        raise TransientError("the idempotency record kept changing; retry")

    def replay_of(self, key: str, body_fingerprint: str, *, owner: str | None = None) -> bool:
        """Whether `owner` already made a job with `key` and this body (a replay: it does not
        count against a quota again)."""
        item = self._call(
            "get_item",
            TableName=self.table_name,
            Key={"job_id": {"S": self.item_id(key, owner)}},
            ConsistentRead=True,
        ).get("Item")
        if item is None or int(item["expires_at"]["N"]) < int(now_utc().timestamp()):
            return False
        return bool(item["fingerprint"]["S"] == body_fingerprint)

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        return call_dynamodb(self._client, self.table_name, operation, **kwargs)
