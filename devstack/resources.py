"""What the pipeline stack creates, created in moto: bucket, table, buses, rules, queues."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from alertfusion import notify
from alertfusion.keys import UPLOAD_PREFIX
from alertfusion.transcribe import job_state_change_pattern
from devstack.config import LocalConfig
from devstack.moto_hooks import MOTO_ACCOUNT_ID
from devstack.stepfunctions import prepare_definition

#: the local names of the backfill function and state machine
BACKFILL_FUNCTION = "local-backfill"
BACKFILL_STATE_MACHINE = "alertfusion-local-backfill"


class Resources:
    """The audio bucket (its uploads notify the ``upload-events`` queue), the jobs table with
        its ``by_status`` index and TTL, the emergency bus (``EmergencyDetected`` → the ``alerts``
        queue), the classifier's Transcribe rule on the default bus (→ ``transcribe-events``) and
        the work queue, each consumed queue with its dead-letter queue; the backfill state
    machine (moto runs it: devstack.stepfunctions)."""

    def __init__(self, client: Callable[[str], Any], config: LocalConfig) -> None:
        self._client = client
        self._config = config
        self._arns: dict[str, str] = {}
        #: queue name → URL
        self.queues: dict[str, str] = {}
        #: the backfill state machine's ARN (after :meth:`create`)
        self.backfill_state_machine_arn = ""

    def queue_arn(self, url: str) -> str:
        found = self._arns.get(url)
        if found is None:
            attrs = self._client("sqs").get_queue_attributes(
                QueueUrl=url, AttributeNames=["QueueArn"]
            )
            found = self._arns[url] = str(attrs["Attributes"]["QueueArn"])
        return found

    def forget_arns(self) -> None:
        self._arns.clear()
        self.backfill_state_machine_arn = ""

    def backfill_function_arn(self) -> str:
        c = self._config
        return f"arn:aws:lambda:{c.region}:{MOTO_ACCOUNT_ID}:function:{BACKFILL_FUNCTION}"

    def create_backfill_state_machine(self) -> str:
        """The definition CDK deploys (alertfusion.backfill.definition), sized by this
        stack's settings, its placeholders filled with this stack's resources, prepared
        for moto's parser (devstack.stepfunctions.prepare_definition)."""
        from alertfusion.backfill.definition import definition_text, substitute
        from alertfusion.backfill.plan import BackfillSettings, plan_for

        c = self._config
        plan = plan_for(c.transcribe_policy, BackfillSettings.model_validate(c.backfill_env))
        text = substitute(
            definition_text(plan),
            {
                "BackfillFunctionArn": self.backfill_function_arn(),
                "WorkQueueUrl": self.queues["work"],
                "AudioBucket": c.bucket,
            },
        )
        definition = prepare_definition(json.loads(text))
        answer = self._client("stepfunctions").create_state_machine(
            name=BACKFILL_STATE_MACHINE,
            definition=json.dumps(definition),
            roleArn=f"arn:aws:iam::{MOTO_ACCOUNT_ID}:role/{BACKFILL_STATE_MACHINE}",
            type="STANDARD",
        )
        self.backfill_state_machine_arn = str(answer["stateMachineArn"])
        return self.backfill_state_machine_arn

    def _queue(self, name: str, *, dlq: bool) -> str:
        sqs = self._client("sqs")
        attributes = {"VisibilityTimeout": str(self._config.visibility_timeout_s)}
        if dlq:
            dead = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
            self.queues[f"{name}-dlq"] = dead
            attributes["RedrivePolicy"] = json.dumps(
                {
                    "deadLetterTargetArn": self.queue_arn(dead),
                    "maxReceiveCount": str(self._config.max_receive_count),
                }
            )
        url: str = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        self.queues[name] = url
        return url

    def create(self) -> None:
        from alertfusion.jobs import create_jobs_table

        c = self._config
        s3, ddb, events = self._client("s3"), self._client("dynamodb"), self._client("events")
        s3.create_bucket(
            Bucket=c.bucket, CreateBucketConfiguration={"LocationConstraint": c.region}
        )
        create_jobs_table(ddb, c.table)
        self._queue("work", dlq=True)
        self.create_backfill_state_machine()
        uploads = self._queue("upload-events", dlq=True)
        transcribe_events = self._queue("transcribe-events", dlq=True)
        alerts = self._queue("alerts", dlq=False)
        events.create_event_bus(Name=c.bus)
        events.put_rule(
            Name="emergency-to-alerts",
            EventBusName=c.bus,
            EventPattern=json.dumps(
                {
                    "source": [notify.EVENT_SOURCE],
                    "detail-type": [notify.DETAIL_TYPE, notify.ALERT_DETAIL_TYPE],
                }
            ),
        )
        events.put_targets(
            Rule="emergency-to-alerts",
            EventBusName=c.bus,
            Targets=[{"Id": "alerts", "Arn": self.queue_arn(alerts)}],
        )
        # the classifier's rule (infra: ClassifierFunction.transcribe_rule, the same pattern),
        # on the default bus
        events.put_rule(
            Name="transcribe-finished",
            EventPattern=json.dumps(job_state_change_pattern(c.transcribe_job_prefix)),
        )
        events.put_targets(
            Rule="transcribe-finished",
            Targets=[{"Id": "classifier", "Arn": self.queue_arn(transcribe_events)}],
        )
        s3.put_bucket_notification_configuration(
            Bucket=c.bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "Id": "uploads-created",
                        "QueueArn": self.queue_arn(uploads),
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {
                            "Key": {"FilterRules": [{"Name": "prefix", "Value": UPLOAD_PREFIX}]}
                        },
                    }
                ]
            },
        )
