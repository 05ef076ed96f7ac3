"""The starter: S3 upload event → job record → Transcribe job + audio-stage task (zip)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from constructs import Construct

from infra.config import REPO_ROOT
from infra.constructs.audio_bucket import TRANSCRIPTS_PREFIX, UPLOADS_PREFIX, AudioBucket
from infra.constructs.function_support import (
    PipelineFunctionProps,
    acknowledge_destination_not_dlq,
    acknowledge_xray,
    acknowledge_zip_runtime,
    function_log_group,
    grant_manifest_read,
    lambda_architecture,
    lambda_role,
    pipeline_environment,
    starter_environment,
)
from infra.constructs.jobs_table import JobsTable
from infra.constructs.layers import ZIP_RUNTIME, FunctionLayers
from infra.constructs.permissions import (
    TABLE_READ_WRITE_ACTIONS,
    allow_job_deletion,
    allow_objects,
    allow_table,
    allow_transcribe_start,
)
from infra.constructs.queues import PipelineQueues

STARTER_ASSET_DIR = REPO_ROOT / "functions" / "starter"
STARTER_HANDLER = "app.handler"
#: header probe (ranged GETs) + one Transcribe call + two table writes + one queue send
STARTER_TIMEOUT_SECONDS = 30
#: Lambda's own retries of a failed asynchronous S3 event (0-2)
STARTER_ASYNC_RETRIES = 2
STARTER_MAX_EVENT_AGE_HOURS = 6
ZIP_ASSET_EXCLUDES = ["__pycache__", "*.pyc", "*.pyo"]


class StarterFunction(Construct):
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
        self.function = lambda_.Function(
            self,
            "Function",
            description="alertfusion starter: upload event -> job -> Transcribe + audio stage",
            runtime=ZIP_RUNTIME,
            architecture=lambda_architecture(config),
            handler=STARTER_HANDLER,
            code=lambda_.Code.from_asset(str(STARTER_ASSET_DIR), exclude=ZIP_ASSET_EXCLUDES),
            layers=layers.all,
            role=self.role,
            log_group=log_group,
            memory_size=config.starter_memory_mb,
            # S3 events beyond it wait in Lambda's asynchronous queue (infra.concurrency)
            reserved_concurrent_executions=config.concurrency.starter,
            timeout=Duration.seconds(STARTER_TIMEOUT_SECONDS),
            tracing=lambda_.Tracing.ACTIVE,
            environment={
                **pipeline_environment(config, props.resources, service="starter"),
                **starter_environment(config),
            },
            on_failure=destinations.SqsDestination(queues.async_failures),
            retry_attempts=STARTER_ASYNC_RETRIES,
            max_event_age=Duration.hours(STARTER_MAX_EVENT_AGE_HOURS),
        )
        acknowledge_destination_not_dlq(self.function)
        acknowledge_zip_runtime(self.function)
        bucket.bucket.add_event_notification(
            s3.EventType.OBJECT_CREATED,
            s3n.LambdaDestination(self.function),
            s3.NotificationKeyFilter(prefix=UPLOADS_PREFIX),
        )
        allow_objects(
            self.role, ["s3:GetObject"], {UPLOADS_PREFIX: bucket.objects_arn(UPLOADS_PREFIX)}
        )
        # an S3 bundle's manifest (and nothing else of it) says whether its recipe reads a
        # transcript
        grant_manifest_read(config, self.role)
        # an upload for a job its owner deleted is deleted too (alertfusion.pipeline.deletion)
        allow_job_deletion(
            self, self.role, bucket.objects_arn, prefixes=(UPLOADS_PREFIX,), job_prefix=None
        )
        allow_table(self.role, table.table.table_arn, TABLE_READ_WRITE_ACTIONS)
        queues.work.grant_send_messages(self.role)
        if config.may_start_transcribe:
            # Transcribe writes the transcript with the starter's permissions. A baked bundle
            # that transcribes itself, served alone, never starts a Transcribe job: no
            # permission to.
            allow_objects(
                self.role,
                ["s3:PutObject"],
                {TRANSCRIPTS_PREFIX: bucket.objects_arn(TRANSCRIPTS_PREFIX)},
            )
            allow_transcribe_start(
                self,
                self.role,
                bucket_name=bucket.bucket.bucket_name,
                transcripts_prefix=TRANSCRIPTS_PREFIX,
            )
        acknowledge_xray(self.role)
