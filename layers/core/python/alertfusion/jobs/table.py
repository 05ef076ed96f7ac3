"""The jobs table's shape: one definition for the CDK construct and for moto."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class KeyAttribute:
    """A key attribute and its DynamoDB type (S, N or B)."""

    name: str
    type: Literal["S", "N", "B"]


#: one item per job (and per Idempotency-Key, ``idempotency#<sha256>``)
PARTITION_KEY = KeyAttribute("job_id", "S")
#: epoch seconds after which DynamoDB deletes the item
TTL_ATTRIBUTE = "expires_at"
BILLING_MODE = "PAY_PER_REQUEST"

#: the sweeper's "stuck in a state since before a deadline" query. Sparse: items without
#: ``status`` (idempotency keys) stay out of it. The sort key is ISO-8601 UTC with
#: milliseconds (`utc_iso`), so string order is time order.
STATUS_INDEX = "by_status"
STATUS_INDEX_PARTITION_KEY = KeyAttribute("status", "S")
STATUS_INDEX_SORT_KEY = KeyAttribute("updated_at", "S")
#: keys only: the sweeper reads nothing but ``job_id`` from the index and re-reads each job
#: consistently before acting (the index is eventually consistent). Projecting the whole item
#: would copy it, verdicts included, into the index on every job write, for reads that never
#: look at it.
STATUS_INDEX_PROJECTION: Literal["KEYS_ONLY"] = "KEYS_ONLY"


def attribute_definitions() -> list[dict[str, str]]:
    """Every key attribute of the table and its index, with its type (as CreateTable takes)."""
    keys = (PARTITION_KEY, STATUS_INDEX_PARTITION_KEY, STATUS_INDEX_SORT_KEY)
    return [{"AttributeName": key.name, "AttributeType": key.type} for key in keys]


def create_jobs_table(client: Any, table_name: str) -> None:
    """Create the table `JobStore` expects, as infra/constructs/jobs_table.py deploys it
    (on-demand, the ``by_status`` index, TTL on ``expires_at``): for moto in the local stack,
    the benchmarks and the tests."""
    client.create_table(
        TableName=table_name,
        BillingMode=BILLING_MODE,
        AttributeDefinitions=attribute_definitions(),
        KeySchema=[{"AttributeName": PARTITION_KEY.name, "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": STATUS_INDEX,
                "KeySchema": [
                    {"AttributeName": STATUS_INDEX_PARTITION_KEY.name, "KeyType": "HASH"},
                    {"AttributeName": STATUS_INDEX_SORT_KEY.name, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": STATUS_INDEX_PROJECTION},
            }
        ],
    )
    client.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
    )
