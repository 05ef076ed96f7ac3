"""Values the pipeline stack exports under fixed names, and how the other stacks import them.

Explicit export names (`<pipeline stack>-<Key>`) instead of CDK's generated ones: they are
readable in the console, stable across refactors, and they make the cdk-nag finding ids of
the API and fallback roles predictable (`Resource::<export name>/uploads/*`).
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import CfnOutput, Fn, RemovalPolicy, Stack

from infra.config import InfraConfig
from infra.constructs.function_support import PipelineResources

BUCKET_NAME = "AudioBucketName"
BUCKET_ARN = "AudioBucketArn"
TABLE_NAME = "JobsTableName"
TABLE_ARN = "JobsTableArn"
EVENT_BUS_NAME = "EmergencyBusName"
WORK_QUEUE_URL = "WorkQueueUrl"
API_KEY_SECRET_ARN = "ClientApiKeySecretArn"
ALARM_TOPIC_ARN = "AlarmTopicArn"
BACKFILL_STATE_MACHINE_ARN = "BackfillStateMachineArn"
#: exported by the API stack with `-c auth=cognito` (the fallback checks the same tokens)
USER_POOL_ID = "UserPoolId"
USER_POOL_CLIENT_ID = "UserPoolClientId"


def removal_policy(config: InfraConfig) -> RemovalPolicy:
    """What `cdk destroy` does with data: keep it (default) or delete it."""
    return RemovalPolicy.RETAIN if config.removal_policy == "retain" else RemovalPolicy.DESTROY


def export_name(pipeline_stack_name: str, key: str) -> str:
    return f"{pipeline_stack_name}-{key}"


def export(stack: Stack, key: str, value: str, description: str) -> None:
    CfnOutput(
        stack,
        key,
        value=value,
        description=description,
        export_name=export_name(stack.stack_name, key),
    )


@dataclass(frozen=True)
class PipelineRefs:
    """The pipeline's resources as another stack sees them (Fn::ImportValue tokens)."""

    bucket_name: str
    bucket_arn: str
    table_name: str
    table_arn: str
    event_bus_name: str
    work_queue_url: str
    api_key_secret_arn: str
    alarm_topic_arn: str | None
    backfill_state_machine_arn: str = ""

    @classmethod
    def imported(cls, pipeline_stack_name: str, *, has_alarm_topic: bool) -> PipelineRefs:
        def value(key: str) -> str:
            return Fn.import_value(export_name(pipeline_stack_name, key))

        return cls(
            bucket_name=value(BUCKET_NAME),
            bucket_arn=value(BUCKET_ARN),
            table_name=value(TABLE_NAME),
            table_arn=value(TABLE_ARN),
            event_bus_name=value(EVENT_BUS_NAME),
            work_queue_url=value(WORK_QUEUE_URL),
            api_key_secret_arn=value(API_KEY_SECRET_ARN),
            alarm_topic_arn=value(ALARM_TOPIC_ARN) if has_alarm_topic else None,
            backfill_state_machine_arn=value(BACKFILL_STATE_MACHINE_ARN),
        )

    @property
    def resources(self) -> PipelineResources:
        return PipelineResources(
            bucket_name=self.bucket_name,
            table_name=self.table_name,
            event_bus_name=self.event_bus_name,
            work_queue_url=self.work_queue_url,
        )

    def objects_arn(self, prefix: str) -> str:
        return f"{self.bucket_arn}/{prefix}*"


@dataclass(frozen=True)
class UserPoolRefs:
    """The API stack's user pool as the fallback stack sees it (Fn::ImportValue tokens)."""

    pool_id: str
    client_id: str

    @classmethod
    def imported(cls, api_stack_name: str) -> UserPoolRefs:
        return cls(
            pool_id=Fn.import_value(export_name(api_stack_name, USER_POOL_ID)),
            client_id=Fn.import_value(export_name(api_stack_name, USER_POOL_CLIENT_ID)),
        )

    def issuer(self, stack: Stack) -> str:
        return f"https://cognito-idp.{stack.region}.{stack.url_suffix}/{self.pool_id}"
