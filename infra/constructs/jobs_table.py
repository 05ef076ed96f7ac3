"""The jobs table: one item per job (plus idempotency items), on-demand, TTL, PITR, encrypted."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

PARTITION_KEY = "job_id"
TTL_ATTRIBUTE = "expires_at"
BY_STATUS_INDEX = "by_status"
BY_STATUS_PARTITION_KEY = "status"
BY_STATUS_SORT_KEY = "updated_at"


class JobsTable(Construct):
    """`table`: partition key `job_id`; the sparse GSI `by_status` (`status`, `updated_at`) is
    the sweeper's "stuck in a state past a deadline" query (items without `status`, such as
    idempotency keys, stay out of it)."""

    def __init__(self, scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy):
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(
                name=PARTITION_KEY, type=dynamodb.AttributeType.STRING
            ),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
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
            index_name=BY_STATUS_INDEX,
            partition_key=dynamodb.Attribute(
                name=BY_STATUS_PARTITION_KEY, type=dynamodb.AttributeType.STRING
            ),
            sort_key=dynamodb.Attribute(
                name=BY_STATUS_SORT_KEY, type=dynamodb.AttributeType.STRING
            ),
            projection_type=dynamodb.ProjectionType.ALL,
        )

    @property
    def by_status_index_arn(self) -> str:
        return f"{self.table.table_arn}/index/{BY_STATUS_INDEX}"
