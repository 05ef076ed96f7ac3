"""The deployed jobs table and the one the local stack and the tests build on moto are alike."""

from __future__ import annotations

from typing import Any

import pytest

from alertfusion.jobs import create_jobs_table
from tests.infra.conftest import Synth
from tests.infra.templates import find_one

pytestmark = pytest.mark.infra


def _shape(
    *,
    key_schema: list[dict[str, Any]],
    attributes: list[dict[str, Any]],
    indexes: list[dict[str, Any]],
    ttl: tuple[str | None, bool],
    billing_mode: str | None,
) -> dict[str, Any]:
    """What both sides must agree on, in one comparable form (CloudFormation's and
    DescribeTable's field names are the same; the ordering of definitions is not)."""
    return {
        "key_schema": [(k["AttributeName"], k["KeyType"]) for k in key_schema],
        "attributes": sorted((a["AttributeName"], a["AttributeType"]) for a in attributes),
        "indexes": {
            index["IndexName"]: {
                "key_schema": [(k["AttributeName"], k["KeyType"]) for k in index["KeySchema"]],
                "projection": index["Projection"]["ProjectionType"],
                "non_key_attributes": sorted(index["Projection"].get("NonKeyAttributes", [])),
            }
            for index in indexes
        },
        "ttl": ttl,
        "billing_mode": billing_mode,
    }


def _deployed(synth: Synth) -> dict[str, Any]:
    props = find_one(synth.templates["pipeline"], "AWS::DynamoDB::Table", "JobsTable")[1][
        "Properties"
    ]
    ttl = props.get("TimeToLiveSpecification", {})
    return _shape(
        key_schema=props["KeySchema"],
        attributes=props["AttributeDefinitions"],
        indexes=props.get("GlobalSecondaryIndexes", []),
        ttl=(ttl.get("AttributeName"), ttl.get("Enabled") is True),
        billing_mode=props.get("BillingMode"),
    )


def _on_moto(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    import boto3
    from moto import mock_aws

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="ap-northeast-2")
        create_jobs_table(client, "shape-jobs")
        table = client.describe_table(TableName="shape-jobs")["Table"]
        ttl = client.describe_time_to_live(TableName="shape-jobs")["TimeToLiveDescription"]
    return _shape(
        key_schema=table["KeySchema"],
        attributes=table["AttributeDefinitions"],
        indexes=table.get("GlobalSecondaryIndexes", []),
        ttl=(ttl.get("AttributeName"), ttl.get("TimeToLiveStatus") == "ENABLED"),
        billing_mode=table.get("BillingModeSummary", {}).get("BillingMode"),
    )


def test_create_jobs_table_builds_the_deployed_table_on_moto(
    synth: Synth, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployed = _deployed(synth)
    assert deployed == _on_moto(monkeypatch)
    # what the store and the sweeper rely on, so that both sides losing it alike shows too
    assert deployed["key_schema"] == [("job_id", "HASH")]
    assert deployed["indexes"]["by_status"]["key_schema"] == [
        ("status", "HASH"),
        ("updated_at", "RANGE"),
    ]
    assert deployed["ttl"] == ("expires_at", True)
