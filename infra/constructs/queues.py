"""The classifier's work queue and the dead-letter queues of every asynchronous path."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.nag import acknowledge

#: AWS's guidance for an SQS event source: visibility timeout >= 6 x the function timeout.
VISIBILITY_TIMEOUT_FACTOR = 6
#: Deliveries of one task before it goes to the work DLQ (each runs the classifier once).
WORK_MAX_RECEIVE_COUNT = 3
WORK_RETENTION_DAYS = 4
DLQ_RETENTION_DAYS = 14

_DLQ_REASON = (
    "This queue is itself a dead-letter queue ({role}); a DLQ of a DLQ would only move the "
    "same failed messages again. It is alarmed when not empty."
)


def _queue(
    scope: Construct,
    construct_id: str,
    *,
    retention_period: Duration,
    visibility_timeout: Duration | None = None,
    dead_letter_queue: sqs.DeadLetterQueue | None = None,
) -> sqs.Queue:
    return sqs.Queue(
        scope,
        construct_id,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=retention_period,
        visibility_timeout=visibility_timeout,
        dead_letter_queue=dead_letter_queue,
    )


class PipelineQueues(Construct):
    """`work` (audio_stage / finalize tasks for the classifier) with its DLQ `work_dlq`;
    `events_dlq` (EventBridge could not deliver a Transcribe or schedule event);
    `async_failures` (on-failure destination of every asynchronous Lambda invocation)."""

    def __init__(
        self, scope: Construct, construct_id: str, *, classifier_timeout: Duration
    ) -> None:
        super().__init__(scope, construct_id)
        retention = Duration.days(DLQ_RETENTION_DAYS)
        self.work_dlq = _queue(self, "WorkDlq", retention_period=retention)
        self.work = _queue(
            self,
            "Work",
            visibility_timeout=Duration.seconds(
                VISIBILITY_TIMEOUT_FACTOR * classifier_timeout.to_seconds()
            ),
            retention_period=Duration.days(WORK_RETENTION_DAYS),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.work_dlq, max_receive_count=WORK_MAX_RECEIVE_COUNT
            ),
        )
        self.events_dlq = _queue(self, "EventsDlq", retention_period=retention)
        self.async_failures = _queue(self, "AsyncFailures", retention_period=retention)
        # AwsSolutions-SQS3 recognises the work DLQ (a redrive policy names it); Serverless'
        # rule asks every queue, DLQs included, for a redrive policy of its own.
        for queue, role, rules in (
            (self.work_dlq, "the work queue's redrive target", ("Serverless-SQSRedrivePolicy",)),
            (
                self.events_dlq,
                "EventBridge targets' DLQ",
                ("AwsSolutions-SQS3", "Serverless-SQSRedrivePolicy"),
            ),
            (
                self.async_failures,
                "Lambda async on-failure destination",
                ("AwsSolutions-SQS3", "Serverless-SQSRedrivePolicy"),
            ),
        ):
            for rule in rules:
                acknowledge(queue, rule, _DLQ_REASON.format(role=role))

    @property
    def dead_letter_queues(self) -> dict[str, sqs.Queue]:
        """Every queue whose messages mean something failed, by alarm name."""
        return {
            "WorkDlq": self.work_dlq,
            "EventsDlq": self.events_dlq,
            "AsyncFailures": self.async_failures,
        }
