"""The local stack: moto as the embedded AWS, the pipeline's handlers fed by its events.

``LocalStack`` (a context manager) starts moto on 127.0.0.1 (a free port), points every
boto3 client of the process at it (``AWS_ENDPOINT_URL``, fake credentials), creates what the
pipeline stack creates (devstack.resources) and runs the pumps (devstack.pumps) that hand
moto's deliveries to the real handlers (devstack.handlers) and the local Transcribe stand-in
(devstack.transcribe).

Where moto differs from AWS and the stack fills the gap, it says so here:

* S3 event keys are URL-encoded including ``/`` (decoded the same way by the starter), and
  moto's S3 events carry no ``sequencer``/``versionId``;
* moto's EventBridge envelope has no ``account``: the pump adds moto's account id;
* S3 → Lambda, EventBridge → Lambda and SQS → Lambda run no code in moto: the pumps do;
* moto applies a DynamoDB write in steps (half an item is visible, a condition is checked
  apart from the write): the server takes one DynamoDB request at a time
  (``moto_hooks.AtomicDynamoDB``), as DynamoDB makes each item write atomic;
* moto's Transcribe: see ``transcribe.TranscribeStandIn``; its GetTranscriptionJob leaves out
  ``FailureReason`` (filled in), it never throttles (:meth:`LocalStack.throttle_transcribe`
  makes the server answer LimitExceededException): ``moto_hooks.TranscribeGaps``;
* presigned POST conditions are not enforced by moto (the API's tests check the policy);
* moto's state-machine interpreter runs the backfill; what it lacks (Lambda invocations,
  ItemBatcher, failure tolerance, the item reader's pages, redrive) is filled in by
  devstack.stepfunctions; ``auth="cognito"``: moto's user pool (devstack.cognito).

Every hook into moto's internals is in devstack.moto_hooks, which names the moto version it
was written for; the stack refuses to start with another.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC
from typing import Any

from devstack.cognito import LocalPool, create_pool
from devstack.config import LocalConfig
from devstack.handlers import Handlers, Invocation
from devstack.moto_hooks import (
    AtomicDynamoDB,
    MotoServer,
    TranscribeGaps,
    WSGIApp,
    check_moto_version,
    install_fast_dynamodb_serializer,
    pin_transcribe_progression,
    release_transcribe_progression,
    remove_fast_dynamodb_serializer,
)
from devstack.pumps import Pumps
from devstack.resources import BACKFILL_FUNCTION, Resources
from devstack.stepfunctions import (
    LambdaInvokeGap,
    RedriveGap,
    enable_interpreter,
    install_interpreter_hooks,
    remove_interpreter_hooks,
)
from devstack.transcribe import TranscribeStandIn


class LocalStack:
    """moto + resources + pumps + the Transcribe stand-in; ``with LocalStack() as stack:``.

    Everything started is stopped on exit, on an exception and on Ctrl-C: the pump threads
    are joined, moto's state is reset and its server shut down, and the environment the
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
        self._server: MotoServer | None = None
        self._gaps: TranscribeGaps | None = None
        self._saved_env: dict[str, str | None] = {}
        self._clients: dict[str, Any] = {}
        self._handlers = Handlers(
            on_invocation, self.config.sandboxed, self.config.sandbox_concurrency
        )
        self._pumps = Pumps(self, self._handlers)
        self._resources = Resources(self.client, self.config)
        self.endpoint_url = ""
        #: the Cognito user pool (``auth="cognito"``), after start
        self.cognito: LocalPool | None = None
        self.notes: list[str] = []
        self.received_alerts: list[dict[str, Any]] = []
        self.standin = TranscribeStandIn(self)
        self._inject_lock = threading.Lock()
        self._injected_failures: dict[str, int] = {}

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
        check_moto_version()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        pin_transcribe_progression()
        install_fast_dynamodb_serializer()
        self._server = MotoServer(self._wrap_moto)
        self.endpoint_url = self._server.start()
        self._server.reset()  # moto's state is process-wide: start from nothing
        enable_interpreter(self.endpoint_url)
        install_interpreter_hooks()
        self._set_env(
            {
                # where moto's interpreter sends its service integrations' calls
                "MOTO_PORT": self.endpoint_url.rsplit(":", 1)[-1],
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
        self._resources.create()
        if self.config.auth == "cognito":
            self.cognito = create_pool(
                self.client("cognito-idp"),
                endpoint_url=self.endpoint_url,
                region=self.config.region,
            )
        self._set_env(self.pipeline_env())
        self._reset_runtime()
        self._handlers.install()
        self._pumps.start()

    def _wrap_moto(self, app: WSGIApp) -> WSGIApp:
        self._gaps = TranscribeGaps(
            AtomicDynamoDB(app), region=self.config.region, on_started=self._pumps.wake_standin
        )
        return LambdaInvokeGap(
            RedriveGap(self._gaps, region=self.config.region),
            functions=[BACKFILL_FUNCTION],
            invoke=self._invoke_function,
        )

    def _invoke_function(
        self, name: str, event: dict[str, Any]
    ) -> tuple[Any, tuple[str, str] | None]:
        """A Lambda Invoke from the state machine → the real handler (moto runs no code)."""
        action = str(event.get("action"))
        with self._inject_lock:
            injected = self._injected_failures.get(action, 0)
            if injected:
                self._injected_failures[action] = injected - 1
        if injected:
            self.note(f"backfill {action} step: failure injected")
            return None, ("InjectedFailure", f"{action} failed (injected by the local stack)")
        invocation = self._handlers.invoke("backfill", "states", event)
        if invocation.ok:
            return invocation.response, None
        return None, (invocation.error_type or "Exception", invocation.error or "")

    def stop(self) -> None:
        problems: list[str] = []
        alive = self._pumps.stop()
        if alive:
            problems.append(f"threads did not stop: {alive}")
        self._handlers.uninstall()
        if self._server is not None:
            try:
                enable_interpreter(self.endpoint_url, enabled=False)
                self._server.reset()
            except OSError as exc:
                problems.append(f"moto's state was not reset: {exc}")
            self._server.stop()
            self._server = None
            release_transcribe_progression()
            remove_interpreter_hooks()
        remove_fast_dynamodb_serializer()
        self._clients.clear()
        self.cognito = None
        self._resources.forget_arns()
        self._restore_env()
        self._reset_runtime()
        if problems:
            raise RuntimeError("; ".join(problems))

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
            "BACKFILL_STATE_MACHINE_ARN": self._resources.backfill_state_machine_arn,
            **c.backfill_env,
        }
        if c.bundle is not None:
            env["MODEL_BUNDLE"] = str(c.bundle)
        if self.cognito is not None:
            env.update(self.cognito.api_env())
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
        from alertfusion.backfill.plan import backfill_settings
        from alertfusion.pipeline import reset_context
        from alertfusion.settings import engine_settings

        reset_context()
        engine_settings.cache_clear()
        backfill_settings.cache_clear()
        api_settings = sys.modules.get("functions.api.settings")
        if api_settings is not None:  # the API's own settings (AUTH_* follow the stack)
            api_settings.api_settings.cache_clear()
        api_deps = sys.modules.get("functions.api.deps")
        if api_deps is not None:  # the API's own cache of the pipeline's clients
            api_deps.reset_pipeline()
        engine = sys.modules.get("alertfusion.engine")
        if engine is not None:  # not imported yet: nothing cached
            engine.reset_engine()

    # -- clients, resources, pumps ----------------------------------------------------------

    def client(self, service: str) -> Any:
        """A boto3 client on moto (the stack's own; the handlers have theirs)."""
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

    @property
    def queues(self) -> dict[str, str]:
        """Queue name → URL: work, upload-events, transcribe-events, alerts, and ``-dlq``s."""
        return self._resources.queues

    def queue_arn(self, url: str) -> str:
        return self._resources.queue_arn(url)

    @property
    def invocations(self) -> list[Invocation]:
        """Every handler invocation so far, in order."""
        return self._handlers.invocations

    @property
    def pump_errors(self) -> list[str]:
        return self._pumps.errors

    def pause(self, pump: str) -> None:
        """Stop delivering from one pump (uploads, transcribe-events, work, sweeper,
        standin) until :meth:`resume`: events queue up, as when a consumer is slow."""
        self._pumps.pause(pump)

    def resume(self, pump: str) -> None:
        self._pumps.resume(pump)

    def intercept_invocations(self, interceptor: Any) -> None:
        """Let `interceptor(function, trigger, event, job_ids)` run an invocation elsewhere
        (an Invocation) or here (None): the soak's process kills (devstack.child)."""
        self._handlers.interceptor = interceptor

    def run_sweeper(self) -> Invocation:
        """One scheduled run now (the sweeper pump also runs it every ``sweep_interval_s``)."""
        return self._pumps.run_sweeper()

    # -- things the demo and the tests do ---------------------------------------------------

    def warm(self) -> dict[str, float]:
        """What a Lambda sandbox does in its init phase, done now: the handler modules and
        the AWS clients (``init_ms``), and the engine with its bundle (``engine_ms``: load,
        sha256 checks, ONNX sessions; in the classifier's sandbox process when it runs in
        one: its whole init phase). Milliseconds of each."""
        start = time.perf_counter()
        from alertfusion.pipeline import get_context
        from functions.classifier import app as classifier_app  # noqa: F401
        from functions.starter import app as starter_app  # noqa: F401
        from functions.sweeper import app as sweeper_app  # noqa: F401

        get_context()
        init_ms = (time.perf_counter() - start) * 1000
        start = time.perf_counter()
        sandbox = self._handlers.sandbox("classifier")
        if sandbox is None:
            self._handlers.engine().warm_up()
        else:  # its sandbox's init phase: the engine loads there
            sandbox.start()
        return {"init_ms": init_ms, "engine_ms": (time.perf_counter() - start) * 1000}

    def note(self, message: str) -> None:
        self.notes.append(message)
        if self._on_note is not None:
            self._on_note(message)

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

    def fail_backfill_steps(self, action: str, times: int) -> None:
        """The next `times` invocations of the backfill function for `action` (admit, check,
        summarize) fail with ``InjectedFailure``, an error the definition does not retry:
        the child workflow fails (the fault tests use it for the failure tolerance and
        redrive)."""
        with self._inject_lock:
            self._injected_failures[action] = times

    def throttle_transcribe(self, times: int) -> None:
        """The next `times` StartTranscriptionJob calls answer LimitExceededException (moto
        never throttles): the server itself answers 400 with that error code."""
        if self._gaps is None:
            raise RuntimeError("the local stack is not running")
        self._gaps.throttle(times)

    @property
    def throttled_calls(self) -> int:
        """StartTranscriptionJob calls answered LimitExceededException so far."""
        return 0 if self._gaps is None else self._gaps.throttled_calls

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
            last = self._handlers.last_finished()
            return time.time() - last > settle_s and not self._handlers.busy()

        self.wait_for(idle, timeout=timeout)
