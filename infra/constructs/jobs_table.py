"""The jobs table: one item per job (plus idempotency items), on-demand, TTL, PITR, encrypted."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from alertfusion.jobs.table import (
    BILLING_MODE,
    PARTITION_KEY,
    STATUS_INDEX,
    STATUS_INDEX_PARTITION_KEY,
    STATUS_INDEX_PROJECTION,
    STATUS_INDEX_SORT_KEY,
    TTL_ATTRIBUTE,
    KeyAttribute,
)

_TYPES = {
    "S": dynamodb.AttributeType.STRING,
    "N": dynamodb.AttributeType.NUMBER,
    "B": dynamodb.AttributeType.BINARY,
}


def _attribute(key: KeyAttribute) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=key.name, type=_TYPES[key.type])


class JobsTable(Construct):
    """`table`: partition key `job_id`; the sparse GSI `by_status` (`status`, `updated_at`,
    keys only) is the sweeper's "stuck in a state past a deadline" query (items without
    `status`, such as idempotency keys, stay out of it). The shape (keys, types, index, TTL)
    is alertfusion.jobs.table's, which the local stack and the tests build on moto too."""

    def __init__(self, scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy):
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=_attribute(PARTITION_KEY),
            billing_mode=dynamodb.BillingMode(BILLING_MODE),
            time_to_live_attribute=TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            # The AWS-managed key (aws/dynamodb) rather than the default AWS-owned one: key
            # use shows up in CloudTrail, at no monthly key cost.
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            deletion_protection=removal_policy == RemovalPolicy.RETAIN,
            removal_policy=removal_policy,
        )
        self.table.add_global_secondary_index(
            index_name=STATUS_INDEX,
            partition_key=_attribute(STATUS_INDEX_PARTITION_KEY),
            sort_key=_attribute(STATUS_INDEX_SORT_KEY),
            projection_type=dynamodb.ProjectionType(STATUS_INDEX_PROJECTION),
        )

    @property
    def by_status_index_arn(self) -> str:
        return f"{self.table.table_arn}/index/{STATUS_INDEX}"
