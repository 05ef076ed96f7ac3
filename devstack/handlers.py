"""The pipeline's real handlers, invoked as Lambda would: here one at a time, or each sandboxed
function in processes of its own; inference timed."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from devstack.moto_hooks import MOTO_ACCOUNT_ID
from devstack.sandbox import SandboxError, SandboxFunction, SandboxPool

Function = Literal["starter", "classifier", "sweeper", "backfill"]


@dataclass
class Invocation:
    """One handler invocation made by a pump."""

    function: Function
    trigger: str
    started_at: float
    wall_ms: float
    #: time inside the inference engine (classify), measured around each call
    inference_ms: float
    ok: bool
    error: str | None = None
    response: Any = None
    job_ids: tuple[str, ...] = ()
    #: the exception's class name when the handler raised (Lambda's ``errorType``)
    error_type: str | None = None

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


class InferenceClock:
    """Wraps the classifier the handler gets, timing every classify call."""

    def __init__(self) -> None:
        self.ms = 0.0
        self.calls = 0

    def wrap(self, classifier: Any) -> Any:
        clock = self

        class Timed:
            def __getattr__(self, name: str) -> Any:
                return getattr(classifier, name)  # manifest, readiness... as the engine has

            def classify(self, audio: bytes, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return classifier.classify(audio, **kwargs)
                finally:
                    clock.ms += (time.perf_counter() - start) * 1000
                    clock.calls += 1

        return Timed()


def run_handler(handler: Any, function: str, event: dict[str, Any]) -> tuple[Any, str | None]:
    """One invocation as Lambda runs it: (the handler's response, None), or (the error as
    Lambda reports it, "Type: message", and the exception's type name)."""
    try:
        return handler(event, LambdaContext(function_name=f"local-{function}")), None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}", type(exc).__name__


class Handlers:
    """Invokes the pipeline's handlers: in this process, or each of the `sandboxed`
    functions in a sandbox process of its own (devstack.sandbox).

    In this process invocations are serialised, one at a time across the functions:
    Powertools' Logger and Metrics keep per-invocation state in module globals, which
    parallel invocations in one process would mix (in AWS each sandbox is its own process).
    A sandboxed function runs in processes of its own (up to `sandbox_concurrency`
    invocations at once, one per process, as Lambda runs concurrent invocations in as many
    sandboxes), beside the others: the backfill function's steps (admit, a check of a
    batch's jobs every few seconds, summarize) by default; the classifier too when asked
    (the backfill demo), which leaves this process to moto's server and the pumps. While
    an interceptor is set (the soak), every function runs here. The classifier's engine
    (``get_classifier``: alertfusion.engine.get_engine, MODEL_BUNDLE) is wrapped to time
    inference, here while installed and in its sandboxes: handler overhead is the rest.
    """

    def __init__(
        self,
        on_invocation: Callable[[Invocation], None] | None = None,
        sandboxed: Iterable[SandboxFunction] = ("backfill",),
        sandbox_concurrency: int = 2,
    ) -> None:
        self._on_invocation = on_invocation
        self._lock = threading.Lock()
        self._clock = InferenceClock()
        self._original_classifier: Any = None
        self._sandboxes: dict[Function, SandboxPool] = {
            f: SandboxPool(f, sandbox_concurrency) for f in sandboxed
        }
        self.invocations: list[Invocation] = []
        #: decides, per invocation, to run it elsewhere (the soak runs some in a child
        #: process it kills: devstack.child): the Invocation made there, or None to run the
        #: handler here. Called under the invocation lock, like a handler.
        self.interceptor: (
            Callable[[Function, str, dict[str, Any], tuple[str, ...]], Invocation | None] | None
        ) = None

    def install(self) -> None:
        from functions.classifier import app as classifier_app

        original = classifier_app.get_classifier
        clock = self._clock

        def timed_classifier() -> Any:
            return clock.wrap(original())

        self._original_classifier = original
        classifier_app.get_classifier = timed_classifier
        for sandbox in self._sandboxes.values():
            sandbox.reopen()

    def uninstall(self) -> None:
        if self._original_classifier is not None:
            from functions.classifier import app as classifier_app

            classifier_app.get_classifier = self._original_classifier
            self._original_classifier = None
        for sandbox in self._sandboxes.values():
            sandbox.stop()

    def sandbox(self, function: Function) -> SandboxPool | None:
        """The sandbox processes the function runs in, None when it runs in this process."""
        return self._sandboxes.get(function)

    def engine(self) -> Any:
        """The classifier's engine itself (not timed)."""
        from functions.classifier import app as classifier_app

        return (self._original_classifier or classifier_app.get_classifier)()

    def busy(self) -> bool:
        return self._lock.locked() or any(s.busy() for s in self._sandboxes.values())

    def last_finished(self) -> float:
        """When (epoch seconds) the latest invocation ended; 0 before any."""
        return max((i.started_at + i.wall_ms / 1000 for i in self.invocations), default=0.0)

    def invoke(
        self,
        function: Function,
        trigger: str,
        event: dict[str, Any],
        job_ids: tuple[str, ...] = (),
    ) -> Invocation:
        sandbox = self._sandboxes.get(function)
        if sandbox is not None and self.interceptor is None:
            return self._invoke_in(sandbox, function, trigger, event, job_ids)
        if function == "starter":
            from functions.starter.app import handler
        elif function == "classifier":
            from functions.classifier.app import handler
        elif function == "backfill":
            from functions.backfill.app import handler
        else:
            from functions.sweeper.app import handler
        with self._lock:
            elsewhere = (
                self.interceptor(function, trigger, event, job_ids) if self.interceptor else None
            )
            if elsewhere is not None:
                self.invocations.append(elsewhere)
                return elsewhere
            self._clock.ms, self._clock.calls = 0.0, 0
            started = time.time()
            start = time.perf_counter()
            response, error_type = run_handler(handler, function, event)
            wall = (time.perf_counter() - start) * 1000
            error = response if error_type is not None else None
            invocation = Invocation(
                function,
                trigger,
                started,
                wall,
                self._clock.ms,
                error_type is None,
                error,
                None if error_type is not None else response,
                job_ids,
                error_type,
            )
            self.invocations.append(invocation)
        if self._on_invocation is not None:
            self._on_invocation(invocation)
        return invocation

    def _invoke_in(
        self,
        sandbox: SandboxPool,
        function: Function,
        trigger: str,
        event: dict[str, Any],
        job_ids: tuple[str, ...],
    ) -> Invocation:
        started = time.time()
        start = time.perf_counter()
        try:
            answer = sandbox.invoke(event)
        except SandboxError as exc:  # the sandbox died: Lambda's own error, retried
            answer = {"ok": False, "error": str(exc), "error_type": "Lambda.ServiceException"}
        invocation = Invocation(
            function,
            trigger,
            started,
            (time.perf_counter() - start) * 1000,
            float(answer.get("inference_ms") or 0.0),
            bool(answer["ok"]),
            answer.get("error"),
            answer.get("response"),
            job_ids,
            answer.get("error_type"),
        )
        # not under the lock, which an in-process invocation holds while it runs
        self.invocations.append(invocation)
        if self._on_invocation is not None:
            self._on_invocation(invocation)
        return invocation
