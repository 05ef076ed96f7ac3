"""The local stack: moto as the embedded AWS, and pumps that deliver its events to the real
handlers in this process.

``LocalStack`` (a context manager) starts moto's ``ThreadedMotoServer`` on 127.0.0.1 (a free
port), points every boto3 client of the process at it (``AWS_ENDPOINT_URL``, fake
credentials), creates what the pipeline stack creates (the audio bucket, the jobs table with
its ``by_status`` index and TTL, the emergency bus, the work queue), and runs these threads:

* **uploads pump**: the bucket's real S3 notifications (moto delivers S3 → SQS; in AWS it is
  S3 → Lambda with the same ``Records`` payload) → the starter handler, one notification per
  invocation. A notification whose invocation raises stays queued and comes back after
  the visibility timeout (Lambda's asynchronous retries).
* **Transcribe events pump**: an EventBridge rule on the *default* bus with the pipeline's
  pattern (``aws.transcribe``, "Transcribe Job State Change", job-name prefix,
  COMPLETED/FAILED) → an SQS queue (moto delivers EventBridge → SQS) → the classifier
  handler with the EventBridge envelope as the body carries it.
* **work pump**: the work queue → the classifier handler as a genuine SQS event (``Records``
  with ``messageId``, ``receiptHandle``, ``body``, ``attributes``, ``eventSource: aws:sqs``…),
  batch size 1 as in the infrastructure; records named in ``batchItemFailures`` (or all, when
  the invocation raises) stay queued for redelivery, the rest are deleted. After
  ``max_receive_count`` receives a message moves to the queue's dead-letter queue.
* **sweeper**: the sweeper handler with a "Scheduled Event" every ``sweep_interval_s``.
* **the Transcribe stand-in** (:class:`TranscribeStandIn`). moto's Transcribe accepts jobs
  but never writes a transcript, never emits an event and never fails a job. The stand-in
  watches the jobs moto holds and does what Transcribe would: writes the output file in
  Transcribe's JSON shape from a text it is *given* (it recognises no speech), moves moto's
  job to COMPLETED (or FAILED when told to), and puts the "Transcribe Job State Change"
  event on the default bus.

The emergency bus has a rule that delivers ``EmergencyDetected`` events to an ``alerts``
queue, which :meth:`LocalStack.alerts` reads.

Where moto differs from AWS and the harness fills the gap, it says so here:

* S3 event keys are URL-encoded including ``/`` (decoded the same way by the starter), and
  moto's S3 events carry no ``sequencer``/``versionId``;
* moto's EventBridge envelope has no ``account``: the pump adds moto's account id;
* S3 → Lambda, EventBridge → Lambda and SQS → Lambda run no code in moto: the pumps do;
* moto applies a DynamoDB write in steps (half an item is visible, a condition is checked
  apart from the write): the server takes one DynamoDB request at a time
  (:class:`_AtomicDynamoDB`), as DynamoDB makes each item write atomic;
* moto's Transcribe: see :class:`TranscribeStandIn`; its GetTranscriptionJob leaves out
  ``FailureReason`` (filled in), it never throttles (:meth:`LocalStack.throttle_transcribe`
  makes the server answer LimitExceededException);
* presigned POST conditions are not enforced by moto (the API's tests check the policy).

Handler invocations are serialised, one at a time across all functions: Powertools' Logger
and Metrics keep per-invocation state in module globals, which parallel invocations in one
process would mix (in AWS each sandbox is its own process).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
MOTO_ACCOUNT_ID = "123456789012"
STANDIN_LABEL = "[local Transcribe stand-in]"
TRANSCRIBE_SOURCE = "aws.transcribe"
TRANSCRIBE_DETAIL_TYPE = "Transcribe Job State Change"
#: the classifier rule's statuses (infra.constructs.classifier_function)
TRANSCRIBE_FINAL_STATUSES = ["COMPLETED", "FAILED"]

log = logging.getLogger("alertfusion.local")


# --- configuration -----------------------------------------------------------------------


@dataclass(frozen=True)
class LocalConfig:
    """Names and timings of the local stack. Resource names are fixed: moto starts empty."""

    region: str = "ap-northeast-2"
    bucket: str = "alertfusion-local-audio"
    table: str = "alertfusion-local-jobs"
    bus: str = "alertfusion-local-emergency"
    transcribe_job_prefix: str = "alert-"
    transcribe_policy: Literal["always", "gated"] = "always"
    #: the model bundle the classifier loads (MODEL_BUNDLE); None leaves the variable alone
    bundle: str | None = None
    #: the pipeline's deadlines, shorter than in AWS so that the sweeper acts within a demo
    stuck_after_seconds: int = 30
    hard_timeout_seconds: int = 600
    #: how often the local schedule runs the sweeper (AWS: every 5 minutes)
    sweep_interval_s: float = 5.0
    #: how long a message whose invocation failed stays invisible before redelivery
    visibility_timeout_s: int = 2
    #: receives before a message moves to its dead-letter queue
    max_receive_count: int = 5
    #: work-queue records per classifier invocation (the infrastructure uses 1)
    work_batch_size: int = 1
    #: the stand-in wakes when moto accepts a StartTranscriptionJob, else looks this often
    standin_poll_s: float = 1.0
    #: extra environment for the handlers (e.g. MAX_UPLOAD_BYTES)
    env: dict[str, str] = field(default_factory=dict)


# --- Transcribe stand-in -------------------------------------------------------------------


@dataclass(frozen=True)
class StandInOutcome:
    """What the stand-in makes of one Transcribe job."""

    #: IN_PROGRESS: Transcribe never finishes the job (no file, no event)
    status: Literal["COMPLETED", "FAILED", "IN_PROGRESS"] = "COMPLETED"
    #: the transcript; "" writes Transcribe's output for a recording without words
    text: str = ""
    failure_reason: str = "The media file could not be transcribed (local stand-in)."
    #: False: the job finishes but its event is lost (only the sweeper can finish the job)
    emit_event: bool = True
    #: how many times EventBridge delivers the event (at least once)
    event_copies: int = 1

    @classmethod
    def completed(cls, text: str, **kwargs: Any) -> StandInOutcome:
        return cls(status="COMPLETED", text=text, **kwargs)

    @classmethod
    def never_finishes(cls) -> StandInOutcome:
        return cls(status="IN_PROGRESS", emit_event=False)

    @classmethod
    def failed(cls, reason: str | None = None, **kwargs: Any) -> StandInOutcome:
        if reason is not None:
            kwargs["failure_reason"] = reason
        return cls(status="FAILED", **kwargs)


def sample_transcripts() -> dict[str, str]:
    """sha256 of each shipped sample → its transcript (samples/transcripts.json)."""
    names: dict[str, str] = json.loads((SAMPLES / "transcripts.json").read_text("utf-8"))
    out: dict[str, str] = {}
    for name, text in names.items():
        path = SAMPLES / name
        if path.is_file():
            out[hashlib.sha256(path.read_bytes()).hexdigest()] = text
    return out


@dataclass(frozen=True)
class HandledJob:
    job_name: str
    media_uri: str
    outcome: StandInOutcome
    transcript_key: str | None
    finished_at: float


class TranscribeStandIn:
    """Does for moto's Transcribe jobs what Amazon Transcribe would do, from given text.

    It does NOT recognise speech. For each new job it picks an outcome: the one planned for
    the job id or object key (:meth:`plan`), else the transcript of a shipped sample whose
    bytes equal the job's media (samples/transcripts.json), else an empty transcript (what
    Transcribe writes for a recording without words). Then, in Transcribe's order: the job
    IN_PROGRESS, the output file at the job's ``OutputKey`` in Transcribe's JSON shape
    (``results.transcripts`` carries the text; ``items``/``audio_segments`` stay empty, since
    nothing aligns words to audio here), the job COMPLETED (or FAILED with a reason), and the
    "Transcribe Job State Change" event on the default bus, unless the outcome says the event
    is lost.

    moto would otherwise move a job one state per ``GetTranscriptionJob`` call, so the
    sweeper's calls could finish a job before its transcript exists. The harness pins moto's
    progression (``state_manager``: manual, never reached) so that, as with Transcribe, only
    the stand-in finishes jobs; it sets the fields moto's own progression would set (start
    and completion times, transcript URI, failure reason) on moto's job object, because
    moto has no API to do it.
    """

    def __init__(self, stack: LocalStack) -> None:
        self._stack = stack
        self._plans: dict[str, StandInOutcome] = {}
        self._lock = threading.Lock()
        self._samples = sample_transcripts()
        self.handled: dict[str, HandledJob] = {}
        self.errors: list[str] = []

    def plan(self, job_id_or_key: str, outcome: StandInOutcome) -> None:
        """Decide what happens to the Transcribe job of a job id or an upload's object key."""
        with self._lock:
            self._plans[job_id_or_key] = outcome

    def _outcome_for(
        self, job_id: str | None, object_key: str, media: bytes | None
    ) -> tuple[StandInOutcome, str]:
        with self._lock:
            for key in (job_id, object_key):
                if key is not None and key in self._plans:
                    return self._plans[key], "planned"
        if media is not None:
            text = self._samples.get(hashlib.sha256(media).hexdigest())
            if text is not None:
                return StandInOutcome.completed(text), "the sample's transcript"
        return StandInOutcome.completed(""), "no text supplied: empty transcript"

    def poll_once(self) -> int:
        """Handle every job moto holds that the stand-in has not handled; returns how many."""
        done = 0
        for name in self._stack.transcribe_job_names():
            if name in self.handled:
                continue
            try:
                self._handle(name)
            except Exception as exc:  # keep watching the other jobs; report it
                self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
                log.exception("%s failed on %s", STANDIN_LABEL, name)
                self.handled[name] = HandledJob(name, "", StandInOutcome(), None, time.time())
            done += 1
        return done

    def _moto_job(self, name: str) -> Any:
        from moto.transcribe.models import transcribe_backends

        return transcribe_backends[MOTO_ACCOUNT_ID][self._stack.config.region].transcriptions[name]

    def _set_status(self, name: str, status: str, **fields: Any) -> None:
        """What moto's progression would set, on moto's job object (no API exists for it)."""
        job = self._moto_job(name)
        now = datetime.now(UTC)
        if job.start_time is None:
            job.start_time = now
        if status in ("COMPLETED", "FAILED"):
            job.completion_time = now
        for attribute, value in fields.items():
            setattr(job, attribute, value)
        job.status = status

    def _handle(self, name: str) -> None:
        from alertfusion.keys import job_id_from_transcribe_job_name

        stack = self._stack
        transcribe, s3 = stack.client("transcribe"), stack.client("s3")
        job = transcribe.get_transcription_job(TranscriptionJobName=name)["TranscriptionJob"]
        self._set_status(name, "IN_PROGRESS")
        media_uri = job["Media"]["MediaFileUri"]
        bucket, _, object_key = media_uri.removeprefix("s3://").partition("/")
        try:
            media: bytes | None = s3.get_object(Bucket=bucket, Key=object_key)["Body"].read()
        except Exception:
            media = None
        job_id = job_id_from_transcribe_job_name(name, stack.config.transcribe_job_prefix)
        outcome, why = self._outcome_for(job_id, object_key, media)
        out_key: str | None = None
        if outcome.status == "IN_PROGRESS":
            stack.note(f"{STANDIN_LABEL} {name}: stays IN_PROGRESS ({why})")
            self.handled[name] = HandledJob(name, media_uri, outcome, None, time.time())
            return
        if outcome.status == "COMPLETED":
            moto_job = self._moto_job(name)
            out_bucket = moto_job._output_bucket_name or bucket
            out_key = moto_job.output_key or f"{name}.json"
            document = transcript_document(name, outcome.text)
            s3.put_object(
                Bucket=out_bucket,
                Key=out_key,
                Body=json.dumps(document, ensure_ascii=False).encode("utf-8"),
                ContentType="application/json",
            )
            uri = f"https://s3.{stack.config.region}.amazonaws.com/{out_bucket}/{out_key}"
            self._set_status(name, "COMPLETED", transcript={"TranscriptFileUri": uri})
        else:
            self._set_status(name, "FAILED", failure_reason=outcome.failure_reason)
        self.handled[name] = HandledJob(name, media_uri, outcome, out_key, time.time())
        stack.note(
            f"{STANDIN_LABEL} {name}: {outcome.status} ({why})"
            + ("" if outcome.emit_event else "; its completion event is lost, as planned")
        )
        if outcome.emit_event:
            for _ in range(max(1, outcome.event_copies)):
                stack.put_transcribe_event(name, outcome.status)


def transcript_document(job_name: str, text: str) -> dict[str, Any]:
    """Transcribe's output file (tests/fixtures/transcribe) for `text`."""
    return {
        "jobName": job_name,
        "accountId": MOTO_ACCOUNT_ID,
        "status": "COMPLETED",
        "results": {"transcripts": [{"transcript": text}], "items": [], "audio_segments": []},
    }


# --- invocations ---------------------------------------------------------------------------


@dataclass
class Invocation:
    """One handler invocation made by a pump."""

    function: Literal["starter", "classifier", "sweeper"]
    trigger: str
    started_at: float
    wall_ms: float
    #: time inside the inference engine (classify), measured around each call
    inference_ms: float
    ok: bool
    error: str | None = None
    response: Any = None
    job_ids: tuple[str, ...] = ()

    @property
    def overhead_ms(self) -> float:
        """Everything but model inference."""
        return self.wall_ms - self.inference_ms


@dataclass
class LambdaContext:
    function_name: str
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 3008
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:ap-northeast-2:{MOTO_ACCOUNT_ID}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


class _InferenceClock:
    """Wraps the classifier the handler gets, timing every classify call."""

    def __init__(self) -> None:
        self.ms = 0.0
        self.calls = 0

    def wrap(self, classifier: Any) -> Any:
        clock = self

        class Timed:
            def classify(self, audio: bytes, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return classifier.classify(audio, **kwargs)
                finally:
                    clock.ms += (time.perf_counter() - start) * 1000
                    clock.calls += 1

        return Timed()


# --- the stack -----------------------------------------------------------------------------


class _AtomicDynamoDB:
    """WSGI middleware: one DynamoDB request at a time. moto applies an UpdateItem in steps
    (a new item exists with only its key before the update expression runs, and a
    condition is checked apart from the write), so concurrent requests could see half an
    item or both pass a condition; DynamoDB makes each item write atomic."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            return self._app(environ, start_response)
        with self._lock:
            # the body is produced under the lock too: moto answers with a list, not a stream
            return list(self._app(environ, start_response))


def _moto_server_class() -> Any:
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    class MotoServer(ThreadedMotoServer):  # type: ignore[misc]
        """moto's threaded server, its app wrapped in :class:`_AtomicDynamoDB`."""

        def _server_entry(self) -> None:
            app = _AtomicDynamoDB(DomainDispatcherApplication(create_backend_app))
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    return MotoServer


class LocalStack:
    """moto + resources + pumps + the Transcribe stand-in; ``with LocalStack() as stack:``.

    Everything started is stopped on exit, on an exception and on Ctrl-C: the pump threads
    are joined, moto's server is shut down and its state reset, and the environment the
    stack changed is restored.
    """

    def __init__(
        self,
        config: LocalConfig | None = None,
        *,
        on_note: Callable[[str], None] | None = None,
        on_invocation: Callable[[Invocation], None] | None = None,
    ) -> None:
        self.config = config or LocalConfig()
        self._on_note = on_note
        self._on_invocation = on_invocation
        self._server: Any = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._paused: dict[str, threading.Event] = {}
        self._invoke_lock = threading.Lock()
        self._saved_env: dict[str, str | None] = {}
        self._saved_get_classifier: Any = None
        self._clients: dict[str, Any] = {}
        self._clock = _InferenceClock()
        self._throttle_remaining = 0
        self._throttle_lock = threading.Lock()
        self._transcribe_started = threading.Event()
        self.endpoint_url = ""
        self.queues: dict[str, str] = {}
        self._arns: dict[str, str] = {}
        self.invocations: list[Invocation] = []
        self.notes: list[str] = []
        self.received_alerts: list[dict[str, Any]] = []
        self.pump_errors: list[str] = []
        self.standin = TranscribeStandIn(self)
        self.throttled_calls = 0

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> LocalStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        from moto.core.base_backend import BackendDict
        from moto.moto_api import state_manager

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        BackendDict.reset()
        # moto would advance a job one state per GetTranscriptionJob; only the stand-in may
        # (see TranscribeStandIn)
        state_manager.set_transition(
            "transcribe::transcriptionjob", {"progression": "manual", "times": 2**62}
        )
        self._server = _moto_server_class()(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        self._set_env(
            {
                "AWS_ENDPOINT_URL": self.endpoint_url,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_SESSION_TOKEN": None,
                "AWS_SECURITY_TOKEN": None,
                "AWS_PROFILE": None,
                "AWS_REGION": self.config.region,
                "AWS_DEFAULT_REGION": self.config.region,
                "POWERTOOLS_TRACE_DISABLED": "true",
                "HOME": os.environ.get("HOME", "/tmp"),
            }
        )
        self._create_resources()
        self._fill_transcribe_gaps()
        self._set_env(self.pipeline_env())
        self._reset_runtime()
        self._install_classifier()
        self._start_threads()

    def stop(self) -> None:
        self._stop.set()
        self._transcribe_started.set()
        for event in self._paused.values():
            event.set()
        for thread in self._threads:
            thread.join(timeout=10)
        alive = [t.name for t in self._threads if t.is_alive()]
        self._threads = []
        if self._saved_get_classifier is not None:
            from functions.classifier import app as classifier_app

            classifier_app.get_classifier = self._saved_get_classifier
            self._saved_get_classifier = None
        if self._server is not None:
            from moto.core.base_backend import BackendDict
            from moto.moto_api import state_manager

            self._server.stop()
            # ThreadedMotoServer.stop() leaves the listening socket open: close it too
            wsgi = getattr(self._server, "_server", None)
            if wsgi is not None:
                wsgi.server_close()
            self._server = None
            state_manager.unset_transition("transcribe::transcriptionjob")
            BackendDict.reset()
        self._clients.clear()
        self._arns.clear()
        self._restore_env()
        self._reset_runtime()
        if alive:
            raise RuntimeError(f"threads did not stop: {alive}")

    # -- environment ------------------------------------------------------------------------

    def _set_env(self, values: dict[str, str | None]) -> None:
        for name, value in values.items():
            if name not in self._saved_env:
                self._saved_env[name] = os.environ.get(name)
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def _restore_env(self) -> None:
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()

    def pipeline_env(self) -> dict[str, str | None]:
        """What the pipeline's functions (and the API) read: resource names and settings."""
        c = self.config
        env: dict[str, str | None] = {
            "AUDIO_BUCKET": c.bucket,
            "JOBS_TABLE": c.table,
            "EVENT_BUS_NAME": c.bus,
            "WORK_QUEUE_URL": self.queues.get("work", ""),
            "TRANSCRIBE_JOB_PREFIX": c.transcribe_job_prefix,
            "TRANSCRIBE_POLICY": c.transcribe_policy,
            "STUCK_AFTER_SECONDS": str(c.stuck_after_seconds),
            "HARD_TIMEOUT_SECONDS": str(c.hard_timeout_seconds),
        }
        if c.bundle is not None:
            env["MODEL_BUNDLE"] = str(c.bundle)
        env.update(c.env)
        return env

    @property
    def env(self) -> dict[str, str]:
        """The variables a subprocess needs to use this stack (AWS endpoint + pipeline)."""
        names = [
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            *self.pipeline_env(),
        ]
        return {n: os.environ[n] for n in names if n in os.environ}

    def _reset_runtime(self) -> None:
        """Forget cached settings, clients and the engine, so they follow the environment."""
        from alertfusion.pipeline import reset_context
        from alertfusion.settings import engine_settings

        reset_context()
        engine_settings.cache_clear()
        api_deps = sys.modules.get("functions.api.deps")
        if api_deps is not None:  # the API's own cache of the pipeline's clients
            api_deps.reset_pipeline()
        engine = sys.modules.get("alertfusion.engine")
        if engine is not None:  # not imported yet: nothing cached
            engine.reset_engine()

    def _install_classifier(self) -> None:
        """The classifier handler's engine (alertfusion.engine.get_engine, MODEL_BUNDLE),
        wrapped to time inference: handler overhead is everything else."""
        from functions.classifier import app as classifier_app

        original = classifier_app.get_classifier
        clock = self._clock

        def timed_classifier() -> Any:
            return clock.wrap(original())

        self._saved_get_classifier = original
        classifier_app.get_classifier = timed_classifier

    # -- clients and resources --------------------------------------------------------------

    def client(self, service: str) -> Any:
        """A boto3 client on moto (the harness's own; the handlers have theirs)."""
        found = self._clients.get(service)
        if found is None:
            import boto3

            if "session" not in self._clients:
                self._clients["session"] = boto3.session.Session()
            found = self._clients["session"].client(
                service, region_name=self.config.region, endpoint_url=self.endpoint_url
            )
            self._clients[service] = found
        return found

    def _queue(self, name: str, *, dlq: bool) -> str:
        sqs = self.client("sqs")
        attributes = {"VisibilityTimeout": str(self.config.visibility_timeout_s)}
        if dlq:
            dead = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
            self.queues[f"{name}-dlq"] = dead
            attributes["RedrivePolicy"] = json.dumps(
                {
                    "deadLetterTargetArn": self.queue_arn(dead),
                    "maxReceiveCount": str(self.config.max_receive_count),
                }
            )
        url: str = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        self.queues[name] = url
        return url

    def queue_arn(self, url: str) -> str:
        found = self._arns.get(url)
        if found is None:
            attrs = self.client("sqs").get_queue_attributes(
                QueueUrl=url, AttributeNames=["QueueArn"]
            )
            found = self._arns[url] = str(attrs["Attributes"]["QueueArn"])
        return found

    def _create_resources(self) -> None:
        from alertfusion.jobs import create_jobs_table

        c = self.config
        s3, ddb, events = self.client("s3"), self.client("dynamodb"), self.client("events")
        s3.create_bucket(
            Bucket=c.bucket, CreateBucketConfiguration={"LocationConstraint": c.region}
        )
        create_jobs_table(ddb, c.table)
        self._queue("work", dlq=True)
        uploads = self._queue("upload-events", dlq=True)
        transcribe_events = self._queue("transcribe-events", dlq=True)
        alerts = self._queue("alerts", dlq=False)
        events.create_event_bus(Name=c.bus)
        events.put_rule(
            Name="emergency-to-alerts",
            EventBusName=c.bus,
            EventPattern=json.dumps(
                {"source": ["alertfusion"], "detail-type": ["EmergencyDetected"]}
            ),
        )
        events.put_targets(
            Rule="emergency-to-alerts",
            EventBusName=c.bus,
            Targets=[{"Id": "alerts", "Arn": self.queue_arn(alerts)}],
        )
        # the classifier's rule (infra: ClassifierFunction.transcribe_rule), on the default bus
        events.put_rule(
            Name="transcribe-finished",
            EventPattern=json.dumps(
                {
                    "source": [TRANSCRIBE_SOURCE],
                    "detail-type": [TRANSCRIBE_DETAIL_TYPE],
                    "detail": {
                        "TranscriptionJobName": [{"prefix": c.transcribe_job_prefix}],
                        "TranscriptionJobStatus": TRANSCRIBE_FINAL_STATUSES,
                    },
                }
            ),
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
                            "Key": {"FilterRules": [{"Name": "prefix", "Value": "uploads/"}]}
                        },
                    }
                ]
            },
        )

    def _transcribe_backend(self) -> Any:
        from moto.transcribe.models import transcribe_backends

        return transcribe_backends[MOTO_ACCOUNT_ID][self.config.region]

    def _fill_transcribe_gaps(self) -> None:
        """Wrap two calls of moto's Transcribe backend (instance attributes: the
        ``BackendDict.reset()`` at stop re-initialises the backend and drops them):

        * GetTranscriptionJob: moto leaves out ``FailureReason`` (its List call has it);
          Transcribe returns it for a FAILED job, and the pipeline reads it from there.
        * StartTranscriptionJob: throttled on demand (:meth:`throttle_transcribe`), and it
          wakes the stand-in, which would otherwise have to poll moto continuously.
        """
        from moto.core.exceptions import JsonRESTError

        backend = self._transcribe_backend()
        original_get = backend.get_transcription_job
        original_start = backend.start_transcription_job

        def get_transcription_job(transcription_job_name: str) -> Any:
            response = original_get(transcription_job_name)
            job = backend.transcriptions.get(transcription_job_name)
            if job is not None and job.status == "FAILED" and job.failure_reason:
                response["TranscriptionJob"]["FailureReason"] = job.failure_reason
            return response

        def start_transcription_job(*args: Any, **kwargs: Any) -> Any:
            with self._throttle_lock:
                throttle = self._throttle_remaining > 0
                if throttle:
                    self._throttle_remaining -= 1
                    self.throttled_calls += 1
            if throttle:
                raise JsonRESTError(
                    "LimitExceededException", "Rate exceeded (injected by the local harness)"
                )
            response = original_start(*args, **kwargs)
            self._transcribe_started.set()
            return response

        backend.get_transcription_job = get_transcription_job
        backend.start_transcription_job = start_transcription_job

    # -- threads ----------------------------------------------------------------------------

    def _start_threads(self) -> None:
        loops: dict[str, Callable[[], None]] = {
            "uploads": lambda: self._pump("upload-events", self._deliver_upload, batch=1),
            "transcribe-events": lambda: self._pump(
                "transcribe-events", self._deliver_transcribe_event, batch=1
            ),
            "work": lambda: self._pump(
                "work", self._deliver_work, batch=self.config.work_batch_size
            ),
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

    def _guard(self, name: str, loop: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            while not self._stop.is_set():
                try:
                    loop()
                    return
                except Exception as exc:  # moto hiccup: report, back off, keep pumping
                    if self._stop.is_set():
                        return
                    self.pump_errors.append(f"{name}: {type(exc).__name__}: {exc}")
                    log.exception("local pump %s failed", name)
                    self._stop.wait(0.2)

        return run

    def pause(self, pump: str) -> None:
        """Stop delivering from one pump (uploads, transcribe-events, work, sweeper,
        standin) until :meth:`resume`: events queue up, as when a consumer is slow."""
        self._paused[pump].clear()

    def resume(self, pump: str) -> None:
        self._paused[pump].set()
        if pump == "standin":
            self._transcribe_started.set()  # look at the jobs that came meanwhile

    def _wait_unpaused(self, pump: str) -> bool:
        while not self._paused[pump].wait(0.05):
            if self._stop.is_set():
                return False
        return not self._stop.is_set()

    def _pump_name(self, queue: str) -> str:
        return {"upload-events": "uploads"}.get(queue, queue)

    def _pump(
        self, queue: str, deliver: Callable[[list[dict[str, Any]]], set[str]], *, batch: int
    ) -> None:
        sqs, url, pump = self.client("sqs"), self.queues[queue], self._pump_name(queue)
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

    def _invoke(
        self,
        function: Literal["starter", "classifier", "sweeper"],
        trigger: str,
        event: dict[str, Any],
        job_ids: tuple[str, ...] = (),
    ) -> Invocation:
        if function == "starter":
            from functions.starter.app import handler
        elif function == "classifier":
            from functions.classifier.app import handler
        else:
            from functions.sweeper.app import handler
        with self._invoke_lock:
            self._clock.ms, self._clock.calls = 0.0, 0
            started = time.time()
            start = time.perf_counter()
            try:
                response = handler(event, LambdaContext(function_name=f"local-{function}"))
                ok, error = True, None
            except Exception as exc:
                response, ok, error = None, False, f"{type(exc).__name__}: {exc}"
            wall = (time.perf_counter() - start) * 1000
            invocation = Invocation(
                function, trigger, started, wall, self._clock.ms, ok, error, response, job_ids
            )
            self.invocations.append(invocation)
        if self._on_invocation is not None:
            self._on_invocation(invocation)
        return invocation

    def _deliver_upload(self, messages: list[dict[str, Any]]) -> set[str]:
        failed: set[str] = set()
        for message in messages:
            body = json.loads(message["Body"])
            if body.get("Event") == "s3:TestEvent" or "Records" not in body:
                continue  # S3's test message when the notification is configured
            invocation = self._invoke("starter", "s3:ObjectCreated", body)
            if not invocation.ok:
                failed.add(message["MessageId"])
        return failed

    def _deliver_transcribe_event(self, messages: list[dict[str, Any]]) -> set[str]:
        failed: set[str] = set()
        for message in messages:
            event = json.loads(message["Body"])
            # moto's envelope lacks "account"; EventBridge always sets it
            event.setdefault("account", MOTO_ACCOUNT_ID)
            invocation = self._invoke("classifier", "transcribe-event", event)
            if not invocation.ok:
                failed.add(message["MessageId"])
        return failed

    def sqs_lambda_event(self, queue: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """Messages as Lambda's SQS event source hands them to a function."""
        arn = self.queue_arn(self.queues[queue])
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
                    "awsRegion": self.config.region,
                }
            )
        return {"Records": records}

    def _deliver_work(self, messages: list[dict[str, Any]]) -> set[str]:
        event = self.sqs_lambda_event("work", messages)
        job_ids = []
        for message in messages:
            with contextlib.suppress(ValueError, AttributeError):
                job_ids.append(str(json.loads(message["Body"]).get("job_id")))
        invocation = self._invoke("classifier", "work-queue", event, tuple(job_ids))
        if not invocation.ok:
            return {m["MessageId"] for m in messages}
        failures = (invocation.response or {}).get("batchItemFailures", [])
        return {f["itemIdentifier"] for f in failures}

    def scheduled_event(self) -> dict[str, Any]:
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": MOTO_ACCOUNT_ID,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.config.region,
            "resources": [f"arn:aws:events:{self.config.region}:{MOTO_ACCOUNT_ID}:rule/sweeper"],
            "detail": {},
        }

    def run_sweeper(self) -> Invocation:
        """One scheduled run now (the loop also runs it every ``sweep_interval_s``)."""
        return self._invoke("sweeper", "schedule", self.scheduled_event())

    def _sweeper_loop(self) -> None:
        while not self._stop.wait(self.config.sweep_interval_s):
            if self._paused["sweeper"].is_set():
                self.run_sweeper()

    def _standin_loop(self) -> None:
        while not self._stop.is_set():
            self._transcribe_started.wait(self.config.standin_poll_s)
            self._transcribe_started.clear()
            if self._paused["standin"].is_set() and not self._stop.is_set():
                self.standin.poll_once()

    # -- things the demo and the tests do ---------------------------------------------------

    def warm(self) -> dict[str, float]:
        """What a Lambda sandbox does in its init phase, done now: the handler modules and
        the AWS clients (``init_ms``), and the engine with its bundle (``engine_ms``: load,
        sha256 checks, ONNX sessions). Milliseconds of each."""
        start = time.perf_counter()
        from alertfusion.pipeline import get_context
        from functions.classifier import app as classifier_app  # noqa: F401
        from functions.starter import app as starter_app  # noqa: F401
        from functions.sweeper import app as sweeper_app  # noqa: F401

        get_context()
        init_ms = (time.perf_counter() - start) * 1000
        start = time.perf_counter()
        self._saved_get_classifier().warm_up()
        return {"init_ms": init_ms, "engine_ms": (time.perf_counter() - start) * 1000}

    def note(self, message: str) -> None:
        self.notes.append(message)
        if self._on_note is not None:
            self._on_note(message)

    def put_transcribe_event(self, job_name: str, status: str) -> None:
        """The "Transcribe Job State Change" event on the default bus (stand-in's job)."""
        response = self.client("events").put_events(
            Entries=[
                {
                    "Source": TRANSCRIBE_SOURCE,
                    "DetailType": TRANSCRIBE_DETAIL_TYPE,
                    "Detail": json.dumps(
                        {"TranscriptionJobName": job_name, "TranscriptionJobStatus": status}
                    ),
                    "Resources": [],
                }
            ]
        )
        if response.get("FailedEntryCount"):
            raise RuntimeError(f"PutEvents refused the Transcribe event: {response}")

    def upload(
        self, key: str, data: bytes, content_type: str | None = "audio/wav"
    ) -> dict[str, Any]:
        """Upload over HTTP with a presigned POST made here (what the API's ``POST /uploads``
        answers); moto does not check the policy's conditions."""
        import httpx

        conditions: list[Any] = []
        fields: dict[str, str] = {}
        if content_type:
            fields["Content-Type"] = content_type
            conditions.append({"Content-Type": content_type})
        post = self.client("s3").generate_presigned_post(
            self.config.bucket, key, Fields=fields, Conditions=conditions, ExpiresIn=600
        )
        response = httpx.post(
            post["url"],
            data=post["fields"],
            files={"file": (key.rsplit("/", 1)[-1], data, content_type or "")},
            timeout=30,
        )
        response.raise_for_status()
        return {"status": response.status_code, "key": key}

    def replay_upload_event(self, key: str) -> None:
        """Deliver the S3 notification of `key` once more (S3 delivers at least once)."""
        from urllib.parse import quote_plus

        head = self.client("s3").head_object(Bucket=self.config.bucket, Key=key)
        record = {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": self.config.region,
            "eventTime": head["LastModified"]
            .astimezone(UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "eventName": "ObjectCreated:Post",
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "uploads-created",
                "bucket": {"name": self.config.bucket, "arn": f"arn:aws:s3:::{self.config.bucket}"},
                "object": {
                    "key": quote_plus(key),
                    "size": head["ContentLength"],
                    "eTag": head["ETag"].strip('"'),
                },
            },
        }
        self.client("sqs").send_message(
            QueueUrl=self.queues["upload-events"], MessageBody=json.dumps({"Records": [record]})
        )

    def throttle_transcribe(self, times: int) -> None:
        """The next `times` StartTranscriptionJob calls answer LimitExceededException (moto
        never throttles): the server itself answers 400 with that error code."""
        with self._throttle_lock:
            self._throttle_remaining = times

    # -- reading the state ------------------------------------------------------------------

    def job(self, job_id: str) -> Any:
        """The job record (alertfusion.jobs.Job) or None."""
        from alertfusion.pipeline import get_context

        return get_context().store.get(job_id)

    def all_jobs(self) -> list[dict[str, Any]]:
        """Every job item of the table (raw DynamoDB items with a ``status``)."""
        ddb, items = self.client("dynamodb"), []
        kwargs: dict[str, Any] = {"TableName": self.config.table}
        while True:
            page = ddb.scan(**kwargs)
            items += [i for i in page["Items"] if "status" in i]
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def transcribe_job_names(self) -> list[str]:
        transcribe, names = self.client("transcribe"), []
        kwargs: dict[str, Any] = {}
        while True:
            page = transcribe.list_transcription_jobs(**kwargs)
            names += [j["TranscriptionJobName"] for j in page["TranscriptionJobSummaries"]]
            if not page.get("NextToken"):
                return names
            kwargs["NextToken"] = page["NextToken"]

    def alerts(self) -> list[dict[str, Any]]:
        """Every EmergencyDetected event delivered so far (bus → rule → alerts queue)."""
        sqs, url = self.client("sqs"), self.queues["alerts"]
        while True:
            batch = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30
            ).get("Messages", [])
            if not batch:
                return list(self.received_alerts)
            for message in batch:
                self.received_alerts.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    def queue_depth(self, queue: str) -> int:
        attrs = self.client("sqs").get_queue_attributes(
            QueueUrl=self.queues[queue],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(
            attrs["ApproximateNumberOfMessagesNotVisible"]
        )

    def wait_for(
        self, predicate: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.05
    ) -> Any:
        """Poll until `predicate()` is truthy; its value, or TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            time.sleep(interval)

    def wait_until_final(self, job_ids: list[str], *, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until every job is DONE or FAILED; job id → Job."""
        from alertfusion.jobs import FINAL_STATUSES

        def final() -> dict[str, Any] | None:
            jobs = {job_id: self.job(job_id) for job_id in job_ids}
            if all(j is not None and j.status in FINAL_STATUSES for j in jobs.values()):
                return jobs
            return None

        result: dict[str, Any] = self.wait_for(final, timeout=timeout)
        return result

    def wait_idle(self, *, timeout: float = 30.0, settle_s: float = 0.3) -> None:
        """Wait until no queue holds a message and no invocation ran for `settle_s`."""

        def idle() -> bool:
            busy = any(self.queue_depth(q) for q in ("upload-events", "transcribe-events", "work"))
            if busy:
                return False
            last = max((i.started_at + i.wall_ms / 1000 for i in self.invocations), default=0.0)
            return time.time() - last > settle_s and not self._invoke_lock.locked()

        self.wait_for(idle, timeout=timeout)


class ApiServer:
    """The HTTP API (functions.api.app) under uvicorn on 127.0.0.1 in a thread, on a port
    bound before it starts (port 0: a free one). ``with ApiServer() as api: api.url``."""

    def __init__(self, app: Any = None, *, port: int = 0, log_level: str = "warning") -> None:
        self._app = app
        self._port = port
        self._log_level = log_level
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def __enter__(self) -> ApiServer:
        import socket

        import uvicorn

        app = self._app
        if app is None:
            from functions.api.app import create_app

            app = create_app()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level=self._log_level, access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="local-api", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise RuntimeError("the API server did not start")
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
            if self._thread.is_alive():
                raise RuntimeError("the API server did not stop")
