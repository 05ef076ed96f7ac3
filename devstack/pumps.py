"""The threads that run what AWS would run: event deliveries to the handlers, the schedule."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from devstack.handlers import Handlers, Invocation
from devstack.moto_hooks import MOTO_ACCOUNT_ID

if TYPE_CHECKING:
    from devstack.stack import LocalStack

log = logging.getLogger("alertfusion.local")

#: every pump, by the name :meth:`Pumps.pause` and :meth:`Pumps.resume` take
PUMPS = ("uploads", "transcribe-events", "work", "sweeper", "standin")


class Pumps:
    """S3 → Lambda, EventBridge → Lambda and SQS → Lambda run no code in moto: these do.

    * **uploads**: the bucket's real S3 notifications (moto delivers S3 → SQS; in AWS it is
      S3 → Lambda with the same ``Records`` payload) → the starter, one notification per
      invocation. A notification whose invocation raises stays queued and comes back after
      the visibility timeout (Lambda's asynchronous retries).
    * **transcribe-events**: the rule on the default bus with the pipeline's pattern → an SQS
      queue (moto delivers EventBridge → SQS) → the classifier with the EventBridge envelope
      as the body carries it. moto's envelope has no ``account``: moto's account id is added.
    * **work**: the work queue → the classifier as a genuine SQS event (``Records`` with
      ``messageId``, ``receiptHandle``, ``body``, ``attributes``, ``eventSource: aws:sqs``…),
      ``work_batch_size`` records per invocation; records named in ``batchItemFailures`` (or
      all, when the invocation raises) stay queued for redelivery, the rest are deleted.
      After ``max_receive_count`` receives a message moves to the dead-letter queue.
    * **sweeper**: the sweeper with a "Scheduled Event" every ``sweep_interval_s``.
    * **standin**: the Transcribe stand-in, woken when moto accepts a StartTranscriptionJob
      (:meth:`wake_standin`: it handles the jobs named there), else every ``standin_poll_s``
      (then it lists every job moto holds, and handles those it has not seen).
    """

    def __init__(self, stack: LocalStack, handlers: Handlers) -> None:
        self._stack = stack
        self._handlers = handlers
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._paused: dict[str, threading.Event] = {}
        self._standin_wake = threading.Event()
        self._standin_lock = threading.Lock()
        self._started_jobs: list[str] = []
        self.errors: list[str] = []

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        batch = self._stack.config.work_batch_size
        loops: dict[str, Callable[[], None]] = {
            "uploads": lambda: self._pump("upload-events", self._deliver_upload, batch=1),
            "transcribe-events": lambda: self._pump(
                "transcribe-events", self._deliver_transcribe_event, batch=1
            ),
            "work": lambda: self._pump("work", self._deliver_work, batch=batch),
            "sweeper": self._sweeper_loop,
            "standin": self._standin_loop,
        }
        for name, loop in loops.items():
            self._paused[name] = threading.Event()
            self._paused[name].set()
            thread = threading.Thread(target=self._guard(name, loop), name=f"local-{name}")
            thread.daemon = True  # a hard interpreter exit must not hang on it
            self._threads.append(thread)
            thread.start()

    def stop(self) -> list[str]:
        """Stop and join every thread; the names of those still alive after 10 s each."""
        self._stop.set()
        self._standin_wake.set()
        for event in self._paused.values():
            event.set()
        for thread in self._threads:
            thread.join(timeout=10)
        alive = [t.name for t in self._threads if t.is_alive()]
        self._threads = []
        return alive

    def _guard(self, name: str, loop: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            while not self._stop.is_set():
                try:
                    loop()
                    return
                except Exception as exc:  # moto hiccup: report, back off, keep pumping
                    if self._stop.is_set():
                        return
                    self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
                    log.exception("local pump %s failed", name)
                    self._stop.wait(0.2)

        return run

    def pause(self, pump: str) -> None:
        """Stop delivering from one pump (see ``PUMPS``) until :meth:`resume`: events queue
        up, as when a consumer is slow."""
        self._paused[pump].clear()

    def resume(self, pump: str) -> None:
        self._paused[pump].set()
        if pump == "standin":
            self.wake_standin()  # look at the jobs that came meanwhile

    def wake_standin(self, job_name: str | None = None) -> None:
        """Wake the stand-in: for the Transcribe job just started, or (no name) to look at
        every job."""
        if job_name is not None:
            with self._standin_lock:
                self._started_jobs.append(job_name)
        self._standin_wake.set()

    def _wait_unpaused(self, pump: str) -> bool:
        while not self._paused[pump].wait(0.05):
            if self._stop.is_set():
                return False
        return not self._stop.is_set()

    # -- queues -----------------------------------------------------------------------------

    def _pump(
        self, queue: str, deliver: Callable[[list[dict[str, Any]]], set[str]], *, batch: int
    ) -> None:
        sqs, url = self._stack.client("sqs"), self._stack.queues[queue]
        pump = {"upload-events": "uploads"}.get(queue, queue)
        while self._wait_unpaused(pump):
            messages = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=batch,
                WaitTimeSeconds=1,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not messages:
                continue
            if not self._paused[pump].is_set() or self._stop.is_set():
                for message in messages:  # paused while waiting: give them back untouched
                    sqs.change_message_visibility(
                        QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                    )
                continue
            failed = deliver(messages)
            for message in messages:
                if message["MessageId"] in failed:
                    continue  # stays invisible for the visibility timeout, then comes back
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    def _deliver_upload(self, messages: list[dict[str, Any]]) -> set[str]:
        failed: set[str] = set()
        for message in messages:
            body = json.loads(message["Body"])
            if body.get("Event") == "s3:TestEvent" or "Records" not in body:
                continue  # S3's test message when the notification is configured
            invocation = self._handlers.invoke("starter", "s3:ObjectCreated", body)
            if not invocation.ok:
                failed.add(message["MessageId"])
        return failed

    def _deliver_transcribe_event(self, messages: list[dict[str, Any]]) -> set[str]:
        failed: set[str] = set()
        for message in messages:
            event = json.loads(message["Body"])
            # moto's envelope lacks "account"; EventBridge always sets it
            event.setdefault("account", MOTO_ACCOUNT_ID)
            invocation = self._handlers.invoke("classifier", "transcribe-event", event)
            if not invocation.ok:
                failed.add(message["MessageId"])
        return failed

    def sqs_lambda_event(self, queue: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """Messages as Lambda's SQS event source hands them to a function."""
        arn = self._stack.queue_arn(self._stack.queues[queue])
        records = []
        for message in messages:
            attributes = message.get("Attributes", {})
            records.append(
                {
                    "messageId": message["MessageId"],
                    "receiptHandle": message["ReceiptHandle"],
                    "body": message["Body"],
                    "attributes": {
                        "ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1"),
                        "SentTimestamp": attributes.get("SentTimestamp", ""),
                        "SenderId": attributes.get("SenderId", ""),
                        "ApproximateFirstReceiveTimestamp": attributes.get(
                            "ApproximateFirstReceiveTimestamp", ""
                        ),
                    },
                    "messageAttributes": message.get("MessageAttributes", {}),
                    "md5OfBody": message["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": arn,
                    "awsRegion": self._stack.config.region,
                }
            )
        return {"Records": records}

    def _deliver_work(self, messages: list[dict[str, Any]]) -> set[str]:
        event = self.sqs_lambda_event("work", messages)
        job_ids = []
        for message in messages:
            with contextlib.suppress(ValueError, AttributeError):
                job_ids.append(str(json.loads(message["Body"]).get("job_id")))
        invocation = self._handlers.invoke("classifier", "work-queue", event, tuple(job_ids))
        if not invocation.ok:
            return {m["MessageId"] for m in messages}
        failures = (invocation.response or {}).get("batchItemFailures", [])
        return {f["itemIdentifier"] for f in failures}

    # -- timers -----------------------------------------------------------------------------

    def scheduled_event(self) -> dict[str, Any]:
        region = self._stack.config.region
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": MOTO_ACCOUNT_ID,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": region,
            "resources": [f"arn:aws:events:{region}:{MOTO_ACCOUNT_ID}:rule/sweeper"],
            "detail": {},
        }

    def run_sweeper(self) -> Invocation:
        """One scheduled run now (the loop also runs it every ``sweep_interval_s``)."""
        return self._handlers.invoke("sweeper", "schedule", self.scheduled_event())

    def _sweeper_loop(self) -> None:
        while not self._stop.wait(self._stack.config.sweep_interval_s):
            if self._paused["sweeper"].is_set():
                self.run_sweeper()

    def _standin_loop(self) -> None:
        while not self._stop.is_set():
            self._standin_wake.wait(self._stack.config.standin_poll_s)
            self._standin_wake.clear()
            with self._standin_lock:
                started, self._started_jobs = self._started_jobs, []
            if self._paused["standin"].is_set() and not self._stop.is_set():
                # paused, the names are dropped: resume() wakes it to look at every job
                self._stack.standin.poll_once(started or None)
