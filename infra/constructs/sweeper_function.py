"""The sweeper (zip, every 5 minutes): finishes jobs whose Transcribe events were lost, fails
jobs past the hard timeout, and finishes the purge of deleted jobs whose Transcribe job was
still running."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from constructs import Construct

from infra.config import REPO_ROOT
from infra.constructs.audio_bucket import EXPIRING_PREFIXES, AudioBucket
from infra.constructs.function_support import (
    PipelineFunctionProps,
    acknowledge_destination_not_dlq,
    acknowledge_xray,
    acknowledge_zip_runtime,
    function_log_group,
    lambda_architecture,
    lambda_role,
    pipeline_environment,
)
from infra.constructs.jobs_table import JobsTable
from infra.constructs.layers import ZIP_RUNTIME, FunctionLayers
from infra.constructs.permissions import allow_job_deletion, allow_table
from infra.constructs.queues import PipelineQueues
from infra.constructs.starter_function import ZIP_ASSET_EXCLUDES

SWEEPER_ASSET_DIR = REPO_ROOT / "functions" / "sweeper"
SWEEPER_HANDLER = "app.handler"
SWEEP_EVERY_MINUTES = 5
SWEEPER_TIMEOUT_SECONDS = 120
#: A missed run is replaced by the next one: no retries, events older than one period dropped.
SWEEPER_EVENT_RETRY_ATTEMPTS = 0
SWEEPER_ASYNC_RETRIES = 0
SWEEPER_TABLE_ACTIONS = ["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"]


class SweeperFunction(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        props: PipelineFunctionProps,
        bucket: AudioBucket,
        table: JobsTable,
        queues: PipelineQueues,
        layers: FunctionLayers,
    ) -> None:
        super().__init__(scope, construct_id)
        config = props.config
        log_group = function_log_group(self, "Logs", config, props.removal_policy)
        self.role = lambda_role(self, "Role", log_group)
        period = Duration.minutes(SWEEP_EVERY_MINUTES)
        self.function = lambda_.Function(
            self,
            "Function",
            description="alertfusion sweeper: re-drive or time out jobs stuck past a deadline",
            runtime=ZIP_RUNTIME,
            architecture=lambda_architecture(config),
            handler=SWEEPER_HANDLER,
            code=lambda_.Code.from_asset(str(SWEEPER_ASSET_DIR), exclude=ZIP_ASSET_EXCLUDES),
            layers=layers.all,
            role=self.role,
            log_group=log_group,
            memory_size=config.sweeper_memory_mb,
            reserved_concurrent_executions=config.concurrency.sweeper,  # one sweep at a time
            timeout=Duration.seconds(SWEEPER_TIMEOUT_SECONDS),
            tracing=lambda_.Tracing.ACTIVE,
            environment=pipeline_environment(config, props.resources, service="sweeper"),
            on_failure=destinations.SqsDestination(queues.async_failures),
            retry_attempts=SWEEPER_ASYNC_RETRIES,
            max_event_age=period,
        )
        acknowledge_destination_not_dlq(self.function)
        acknowledge_zip_runtime(self.function)
        self.schedule = events.Rule(
            self,
            "Schedule",
            description=f"run the sweeper every {SWEEP_EVERY_MINUTES} minutes",
            schedule=events.Schedule.rate(period),
            targets=[
                targets.LambdaFunction(
                    self.function,
                    dead_letter_queue=queues.events_dlq,
                    retry_attempts=SWEEPER_EVENT_RETRY_ATTEMPTS,
                    max_event_age=period,
                )
            ],
        )
        allow_table(
            self.role,
            table.table.table_arn,
            SWEEPER_TABLE_ACTIONS,
            index_arns=(table.by_status_index_arn,),
        )
        # a deleted job whose Transcribe job ran at the deletion: its transcript, whatever
        # else remains, and the Transcribe job (alertfusion.pipeline.deletion)
        allow_job_deletion(
            self,
            self.role,
            bucket.objects_arn,
            prefixes=EXPIRING_PREFIXES,
            job_prefix=config.transcribe_job_prefix,
        )
        queues.work.grant_send_messages(self.role)
        acknowledge_xray(self.role)
