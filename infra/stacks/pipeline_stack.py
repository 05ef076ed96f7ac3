"""The pipeline: bucket, jobs table, queues, event bus, starter, classifier, sweeper, alarms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from constructs import Construct

from infra.config import InfraConfig
from infra.constructs.alarms import Alarms, AlarmTopic
from infra.constructs.audio_bucket import AudioBucket
from infra.constructs.backfill import Backfill
from infra.constructs.classifier_function import ClassifierFunction
from infra.constructs.client_api_key import ClientApiKey
from infra.constructs.emergency_bus import EmergencyBus
from infra.constructs.function_support import (
    PipelineFunctionProps,
    PipelineResources,
    log_retention,
    service_name,
)
from infra.constructs.jobs_table import JobsTable
from infra.constructs.layers import FunctionLayers
from infra.constructs.queues import PipelineQueues
from infra.constructs.service_image import ServiceImage
from infra.constructs.starter_function import StarterFunction
from infra.constructs.sweeper_function import SweeperFunction
from infra.origins import upload_origins
from infra.stacks import shared
from infra.stacks.cdk_managed import acknowledge_cdk_managed, retain_cdk_handler_logs


class PipelineStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        core_layer_dir: Path,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        removal = shared.removal_policy(config)
        image = ServiceImage.for_config(config)

        self.audio = AudioBucket(
            self,
            "Audio",
            retention_days=config.upload_retention_days,
            cors_allowed_origins=upload_origins(config),
            removal_policy=removal,
        )
        self.jobs = JobsTable(self, "Jobs", removal_policy=removal)
        self.queues = PipelineQueues(
            self, "Queues", classifier_timeout=Duration.seconds(config.classifier_timeout_seconds)
        )
        self.bus = EmergencyBus(self, "Emergency")
        self.api_key = ClientApiKey(self, "ClientApiKey", removal_policy=removal)
        layers = FunctionLayers(self, "Layers", config=config, core_layer_dir=core_layer_dir)
        resources = PipelineResources(
            bucket_name=self.audio.bucket.bucket_name,
            table_name=self.jobs.table.table_name,
            event_bus_name=self.bus.bus.event_bus_name,
            work_queue_url=self.queues.work.queue_url,
        )
        props = PipelineFunctionProps(config=config, resources=resources, removal_policy=removal)
        self.starter = StarterFunction(
            self,
            "Starter",
            props=props,
            bucket=self.audio,
            table=self.jobs,
            queues=self.queues,
            layers=layers,
        )
        self.classifier = ClassifierFunction(
            self,
            "Classifier",
            props=props,
            image=image,
            bucket=self.audio,
            table=self.jobs,
            queues=self.queues,
            bus=self.bus,
        )
        self.backfill = Backfill(
            self,
            "Backfill",
            props=props,
            bucket=self.audio,
            table=self.jobs,
            queues=self.queues,
            layers=layers,
            classifier_role=self.classifier.role,
        )
        self.sweeper = SweeperFunction(
            self,
            "Sweeper",
            props=props,
            bucket=self.audio,
            table=self.jobs,
            queues=self.queues,
            layers=layers,
        )

        self.alarm_topic = (
            AlarmTopic(self, "AlarmTopic", email=config.alarm_email) if config.alarm_email else None
        )
        alarms = Alarms(self, "Alarms", topic=self.alarm_topic.topic if self.alarm_topic else None)
        for name, queue in self.queues.dead_letter_queues.items():
            alarms.queue_not_empty(name, queue)
        for name, construct in (
            ("Starter", self.starter),
            ("Classifier", self.classifier),
            ("Sweeper", self.sweeper),
            ("Backfill", self.backfill),
        ):
            alarms.function_health(name, construct.function)
        alarms.state_machine_failed("Backfill", self.backfill.state_machine)
        alarms.selfcheck_failed("Classifier", service_name("classifier"))

        self._outputs()
        acknowledge_cdk_managed(self)
        retain_cdk_handler_logs(self, log_retention(config))

    def _outputs(self) -> None:
        shared.export(self, shared.BUCKET_NAME, self.audio.bucket.bucket_name, "audio bucket")
        shared.export(self, shared.BUCKET_ARN, self.audio.bucket.bucket_arn, "audio bucket ARN")
        shared.export(self, shared.TABLE_NAME, self.jobs.table.table_name, "jobs table")
        shared.export(self, shared.TABLE_ARN, self.jobs.table.table_arn, "jobs table ARN")
        shared.export(
            self, shared.EVENT_BUS_NAME, self.bus.bus.event_bus_name, "EmergencyDetected bus"
        )
        shared.export(
            self, shared.WORK_QUEUE_URL, self.queues.work.queue_url, "classifier work queue"
        )
        shared.export(
            self,
            shared.API_KEY_SECRET_ARN,
            self.api_key.secret.secret_arn,
            "client API key (aws secretsmanager get-secret-value --secret-id ...)",
        )
        shared.export(
            self,
            shared.BACKFILL_STATE_MACHINE_ARN,
            self.backfill.state_machine.state_machine_arn,
            "backfill state machine (python -m alertfusion backfill, POST /backfills)",
        )
        if self.alarm_topic is not None:
            shared.export(
                self, shared.ALARM_TOPIC_ARN, self.alarm_topic.topic.topic_arn, "alarm topic"
            )
        for key, value in (
            ("WorkQueueName", self.queues.work.queue_name),
            ("WorkDlqName", self.queues.work_dlq.queue_name),
            ("EventsDlqName", self.queues.events_dlq.queue_name),
            ("AsyncFailuresQueueName", self.queues.async_failures.queue_name),
            ("StarterFunctionName", self.starter.function.function_name),
            ("ClassifierFunctionName", self.classifier.function.function_name),
            ("SweeperFunctionName", self.sweeper.function.function_name),
            ("BackfillFunctionName", self.backfill.function.function_name),
        ):
            CfnOutput(self, key, value=value)
