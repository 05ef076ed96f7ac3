"""The classifier (container image): audio-stage / finalize tasks from the work queue and
"Transcribe Job State Change" events → fused verdict, result, EmergencyDetected events."""

from __future__ import annotations

from aws_cdk import Duration, Size
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_lambda_event_sources as sources
from constructs import Construct

from alertfusion.transcribe import job_state_change_pattern
from infra.config import InfraConfig
from infra.constructs.audio_bucket import (
    EXPIRING_PREFIXES,
    RESULTS_PREFIX,
    TRANSCRIPTS_PREFIX,
    UPLOADS_PREFIX,
    AudioBucket,
)
from infra.constructs.emergency_bus import EmergencyBus
from infra.constructs.function_support import (
    PipelineFunctionProps,
    acknowledge_destination_not_dlq,
    acknowledge_snapstart_publish,
    acknowledge_xray,
    engine_environment,
    function_log_group,
    grant_bundle_read,
    lambda_architecture,
    lambda_role,
    live_target,
    pipeline_environment,
    snap_start,
)
from infra.constructs.jobs_table import JobsTable
from infra.constructs.permissions import (
    TABLE_READ_WRITE_ACTIONS,
    allow_job_deletion,
    allow_objects,
    allow_table,
    allow_transcribe_start,
)
from infra.constructs.queues import WORK_MAX_RECEIVE_COUNT, PipelineQueues
from infra.constructs.service_image import CLASSIFIER_COMMAND, ServiceImage
from infra.nag import acknowledge

#: EventBridge's retries of a Lambda target it could not invoke, and how long it keeps trying
EVENT_RETRY_ATTEMPTS = 8
EVENT_MAX_AGE_HOURS = 2
#: Lambda's own retries of a failed asynchronous invocation (0-2)
CLASSIFIER_ASYNC_RETRIES = 2
CLASSIFIER_MAX_EVENT_AGE_HOURS = 6
#: One task per invocation: a task can hold a long recording and must finish in the timeout.
WORK_BATCH_SIZE = 1


class ClassifierFunction(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        props: PipelineFunctionProps,
        image: ServiceImage,
        bucket: AudioBucket,
        table: JobsTable,
        queues: PipelineQueues,
        bus: EmergencyBus,
    ) -> None:
        super().__init__(scope, construct_id)
        config = props.config
        log_group = function_log_group(self, "Logs", config, props.removal_policy)
        self.role = lambda_role(self, "Role", log_group)
        environment = pipeline_environment(config, props.resources, service="classifier")
        environment.update(engine_environment(config))
        self.function = lambda_.DockerImageFunction(
            self,
            "Function",
            description="alertfusion classifier: audio stage + Transcribe finished -> verdict",
            code=image.lambda_code(CLASSIFIER_COMMAND),
            architecture=lambda_architecture(config),
            snap_start=snap_start(config),
            role=self.role,
            log_group=log_group,
            memory_size=config.classifier_memory_mb,
            reserved_concurrent_executions=config.concurrency.classifier,
            timeout=Duration.seconds(config.classifier_timeout_seconds),
            ephemeral_storage_size=(
                Size.mebibytes(config.bundle_ephemeral_mib) if config.bundle_ephemeral_mib else None
            ),
            tracing=lambda_.Tracing.ACTIVE,
            environment=environment,
            on_failure=destinations.SqsDestination(queues.async_failures),
            retry_attempts=CLASSIFIER_ASYNC_RETRIES,
            max_event_age=Duration.hours(CLASSIFIER_MAX_EVENT_AGE_HOURS),
        )
        acknowledge_destination_not_dlq(self.function)
        acknowledge_snapstart_publish(self.function, config)
        #: what the work queue and the Transcribe rule invoke (the `live` alias when versioned)
        self.target = live_target(
            self.function,
            config,
            on_failure=destinations.SqsDestination(queues.async_failures),
            retry_attempts=CLASSIFIER_ASYNC_RETRIES,
            max_event_age=Duration.hours(CLASSIFIER_MAX_EVENT_AGE_HOURS),
        )
        # tasks beyond the maximum wait in the queue (not throttled: no receive is spent);
        # the rest of the reservation stays free for Transcribe's completion events
        work_source = sources.SqsEventSource(
            queues.work,
            batch_size=WORK_BATCH_SIZE,
            report_batch_item_failures=True,
            max_concurrency=config.concurrency.work_queue,
        )
        self.target.add_event_source(work_source)
        acknowledge(
            self.function,
            "Serverless-LambdaEventSourceMappingDestination",
            "An SQS event source mapping takes no on-failure destination (Lambda supports "
            "them for stream and Kafka sources); the work queue's redrive policy moves a task "
            f"to WorkDlq after {WORK_MAX_RECEIVE_COUNT} receives, and WorkDlq is alarmed.",
        )
        pattern = job_state_change_pattern(config.transcribe_job_prefix)
        self.transcribe_rule = events.Rule(
            self,
            "TranscribeFinished",
            description="this pipeline's Transcribe jobs that finished (COMPLETED or FAILED)",
            event_pattern=events.EventPattern(
                source=pattern["source"],
                detail_type=pattern["detail-type"],
                detail=pattern["detail"],
            ),
            targets=[
                targets.LambdaFunction(
                    self.target,
                    dead_letter_queue=queues.events_dlq,
                    retry_attempts=EVENT_RETRY_ATTEMPTS,
                    max_event_age=Duration.hours(EVENT_MAX_AGE_HOURS),
                )
            ],
        )
        self._grant(config, bucket, table, bus, queues)

    def _grant(
        self,
        config: InfraConfig,
        bucket: AudioBucket,
        table: JobsTable,
        bus: EmergencyBus,
        queues: PipelineQueues,
    ) -> None:
        role = self.role
        allow_objects(
            role,
            ["s3:GetObject"],
            {p: bucket.objects_arn(p) for p in (UPLOADS_PREFIX, TRANSCRIPTS_PREFIX)},
        )
        # results/: the final verdict's copy; transcripts/: Transcribe writes with this role
        # when the gated policy starts it from the audio stage. A baked bundle that
        # transcribes itself, served alone, starts no Transcribe job: neither permission. (Reading
        # transcripts/ and the rule stay: a job started under an earlier deployment still
        # finishes with its Transcribe transcript.)
        may_start = config.may_start_transcribe
        writes = (RESULTS_PREFIX, TRANSCRIPTS_PREFIX) if may_start else (RESULTS_PREFIX,)
        allow_objects(role, ["s3:PutObject"], {p: bucket.objects_arn(p) for p in writes})
        allow_table(role, table.table.table_arn, TABLE_READ_WRITE_ACTIONS)
        bus.bus.grant_put_events_to(role)
        # With the gated policy the audio stage starts Transcribe; a job Transcribe refuses
        # is finalised audio-only through a task on the work queue.
        queues.work.grant_send_messages(role)
        if may_start:
            allow_transcribe_start(
                self,
                role,
                bucket_name=bucket.bucket.bucket_name,
                transcripts_prefix=TRANSCRIPTS_PREFIX,
            )
        # the steps that find a deleted job delete what was written for it meanwhile (a
        # transcript, a result file) and its Transcribe job (alertfusion.pipeline.deletion)
        allow_job_deletion(
            self,
            role,
            bucket.objects_arn,
            prefixes=EXPIRING_PREFIXES,
            job_prefix=config.transcribe_job_prefix,
        )
        grant_bundle_read(config, role)
        acknowledge_xray(role)
