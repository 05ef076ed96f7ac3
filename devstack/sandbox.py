"""A function's handler in its own long-lived process, as a Lambda sandbox runs it.

    python -m devstack.sandbox FUNCTION

The local stack runs the backfill function here, and the classifier too when its config
says so (``LocalConfig.sandboxed``; devstack.handlers): Powertools' Logger and Metrics keep
per-invocation state in module globals, so two handlers in one process must take turns; in
processes of their own, as in AWS, they run beside each other and beside moto's server,
on every CPU the machine has. The process does its init phase (imports; the classifier's
engine loaded and warmed up, its classify calls timed) and says ``{"ready": ...}``; then it
reads one request per line on stdin (``{"event": ...}``), runs the handler with a Lambda
context, and answers one line on its original stdout (``{"ok", "response" | "error",
"error_type", "inference_ms"}``). What the handler prints (Powertools' logs and metrics go to
sys.stdout) goes to stderr, which the parent points at its log. The environment (AWS
endpoint, pipeline settings, MODEL_BUNDLE) is the parent's when it started the process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from devstack.handlers import InferenceClock

#: the functions the local stack can run in a sandbox process
SandboxFunction = Literal["backfill", "classifier"]
SANDBOX_FUNCTIONS: tuple[SandboxFunction, ...] = ("backfill", "classifier")


def _init(function: str) -> tuple[Any, InferenceClock]:
    """The handler, after the init phase; the clock that times its classify calls."""
    from devstack.handlers import InferenceClock

    clock = InferenceClock()
    if function == "backfill":
        from functions.backfill.app import handler

        return handler, clock
    if function == "classifier":
        from functions.classifier import app as classifier_app

        original = classifier_app.get_classifier
        original().warm_up()
        classifier_app.get_classifier = lambda: clock.wrap(original())
        return classifier_app.handler, clock
    raise SystemExit(f"devstack.sandbox: no function {function!r} ({SANDBOX_FUNCTIONS})")


def main(argv: list[str] | None = None) -> int:
    function = (argv if argv is not None else sys.argv[1:])[0]
    # Ctrl-C reaches the whole process group: the parent ends the sandbox (its stdin closes)
    # when it stops, after the invocation in flight
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # the answers keep the original stdout; everything printed goes to stderr, bound before
    # Powertools' Logger is created (it binds to sys.stdout when its module is imported)
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    from devstack.handlers import run_handler

    start = time.perf_counter()
    handler, clock = _init(function)
    init_ms = (time.perf_counter() - start) * 1000
    answers.write(json.dumps({"ready": True, "init_ms": init_ms}) + "\n")
    answers.flush()
    for line in sys.stdin:
        event = json.loads(line)["event"]
        clock.ms, clock.calls = 0.0, 0
        response, error_type = run_handler(handler, function, event)
        answer: dict[str, Any] = (
            {"ok": True, "response": response}
            if error_type is None
            else {"ok": False, "error": response, "error_type": error_type}
        )
        answer["inference_ms"] = clock.ms
        sys.stdout.flush()
        answers.write(json.dumps(answer, default=str) + "\n")
        answers.flush()
    return 0


class SandboxPool:
    """Sandboxes of one function: an invocation takes a free one (Lambda runs concurrent
    invocations in as many sandboxes), else waits for the next in turn."""

    def __init__(self, function: SandboxFunction, size: int = 1) -> None:
        self.function = function
        self.sandboxes = [Sandbox(function) for _ in range(max(1, size))]
        self._turn = 0
        self._turn_lock = threading.Lock()

    def busy(self) -> bool:
        return any(s.busy() for s in self.sandboxes)

    def start(self) -> float:
        """Start every sandbox's process now; the slowest init phase (ms)."""
        return max(s.start() for s in self.sandboxes)

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        for sandbox in self.sandboxes:
            answer = sandbox.try_invoke(event)
            if answer is not None:
                return answer
        with self._turn_lock:
            self._turn = (self._turn + 1) % len(self.sandboxes)
            sandbox = self.sandboxes[self._turn]
        return sandbox.invoke(event)

    def reopen(self) -> None:
        for sandbox in self.sandboxes:
            sandbox.reopen()

    def stop(self) -> None:
        for sandbox in self.sandboxes:
            sandbox.stop()


class SandboxError(RuntimeError):
    """The sandbox process ended or answered something that is not an answer."""

    reason = "sandbox_failed"


def _log_sink() -> IO[str] | None:
    """Where the parent's handler logs go (sys.stdout, when it is a file), else None: the
    process inherits stderr."""
    try:
        sys.stdout.flush()
        sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return sys.stdout


class Sandbox:
    """The parent's side of one process: started on first use (or :meth:`start`), one
    invocation at a time (as a Lambda sandbox); a process that died is started again."""

    def __init__(self, function: SandboxFunction) -> None:
        self.function = function
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        #: stopped: no process is started again until :meth:`reopen` (an invocation that
        #: comes while the stack stops gets SandboxError, not a new process nobody ends)
        self._closed = False
        #: the latest process's init phase (imports, engine), once it said it is ready
        self.init_ms: float | None = None

    def reopen(self) -> None:
        with self._lock:
            self._closed = False

    def busy(self) -> bool:
        return self._lock.locked()

    def start(self) -> float:
        """Start the process now if it is not running (its init phase); its init_ms.
        SandboxError when it cannot start."""
        with self._lock:
            try:
                self._started()
            except OSError as exc:
                raise SandboxError(f"{self.function} sandbox: {exc}") from exc
        return self.init_ms or 0.0

    def _started(self) -> subprocess.Popen[str]:
        if self._closed:
            raise SandboxError(f"{self.function} sandbox: stopped")
        process = self._process
        if process is None or process.poll() is not None:
            if process is not None:  # it died: its pipes go with it
                _close_pipes(process)
            self.init_ms = None
            process = subprocess.Popen(
                [sys.executable, "-m", "devstack.sandbox", self.function],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=_log_sink(),
                env=dict(os.environ),
                text=True,
                encoding="utf-8",
            )
            self._process = process
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line:
                raise SandboxError(f"{self.function} sandbox ended (exit {process.wait()})")
            self.init_ms = float(json.loads(line)["init_ms"])
        return process

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        """The handler's answer: ``{"ok": True, "response": ...}`` or ``{"ok": False,
        "error": ..., "error_type": ...}``; SandboxError when the process died meanwhile."""
        with self._lock:
            return self._invoke_locked(event)

    def try_invoke(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """As :meth:`invoke` if the sandbox is free now, else None (it is busy)."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            return self._invoke_locked(event)
        finally:
            self._lock.release()

    def _invoke_locked(self, event: dict[str, Any]) -> dict[str, Any]:
        try:
            process = self._started()
        except OSError as exc:
            raise SandboxError(f"{self.function} sandbox: {exc}") from exc
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(json.dumps({"event": event}) + "\n")
            process.stdin.flush()
            line = process.stdout.readline()
        except OSError as exc:
            raise SandboxError(f"{self.function} sandbox: {exc}") from exc
        if not line:
            raise SandboxError(f"{self.function} sandbox ended (exit {process.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def stop(self) -> None:
        """End the process (its stdin closes: it returns) and wait for it; start none again
        until :meth:`reopen`."""
        with self._lock:
            self._closed = True
            process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()
            process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()
        _close_pipes(process)


def _close_pipes(process: subprocess.Popen[str]) -> None:
    for pipe in (process.stdin, process.stdout):
        if pipe is not None:
            try:
                pipe.close()
            except OSError:
                pass  # a pipe to a dead process may fail to flush


if __name__ == "__main__":
    sys.exit(main())
