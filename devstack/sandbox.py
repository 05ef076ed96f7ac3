"""A function's handler in its own long-lived process, as a Lambda sandbox runs it.

    python -m devstack.sandbox FUNCTION

The local stack runs the backfill function here (devstack.handlers): Powertools' Logger and
Metrics keep per-invocation state in module globals, so two handlers in one process must
take turns; in a process of its own, as in AWS, the backfill function's steps run beside
the classifier's invocations instead of between them. The process reads one request per
line on stdin (``{"event": ...}``), runs the handler with a Lambda context, and answers one
line on its original stdout (``{"ok", "response" | "error", "error_type"}``); what the handler
prints (Powertools' logs and metrics go to sys.stdout) goes to stderr, which the parent
points at its log. The environment (AWS endpoint, pipeline settings) is the parent's when it
started the process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import IO, Any, Literal

#: the functions the local stack runs in a sandbox process (the others take turns in-process)
SandboxFunction = Literal["backfill"]


def _handler(function: str) -> Any:
    if function == "backfill":
        from functions.backfill.app import handler

        return handler
    raise SystemExit(f"devstack.sandbox: no function {function!r} (backfill)")


def main(argv: list[str] | None = None) -> int:
    function = (argv if argv is not None else sys.argv[1:])[0]
    # the answers keep the original stdout; everything printed goes to stderr, bound before
    # Powertools' Logger is created (it binds to sys.stdout when its module is imported)
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    from devstack.handlers import LambdaContext

    handler = _handler(function)
    for line in sys.stdin:
        event = json.loads(line)["event"]
        context = LambdaContext(function_name=f"local-{function}")
        try:
            answer: dict[str, Any] = {"ok": True, "response": handler(event, context)}
        except Exception as exc:  # what Lambda reports as the invocation's error
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            answer["error_type"] = type(exc).__name__
        sys.stdout.flush()
        answers.write(json.dumps(answer, default=str) + "\n")
        answers.flush()
    return 0


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
    """The parent's side: starts the process on first use, one invocation at a time (a
    sandbox runs one at a time, as in Lambda); a process that died is started again."""

    def __init__(self, function: SandboxFunction) -> None:
        self.function = function
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None

    def busy(self) -> bool:
        return self._lock.locked()

    def _started(self) -> subprocess.Popen[str]:
        process = self._process
        if process is None or process.poll() is not None:
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
        return process

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        """The handler's answer: ``{"ok": True, "response": ...}`` or ``{"ok": False,
        "error": ..., "error_type": ...}``; SandboxError when the process died meanwhile."""
        with self._lock:
            process = self._started()
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
        """End the process (its stdin closes: it returns) and wait for it."""
        with self._lock:
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
        if process.stdout is not None:
            process.stdout.close()


if __name__ == "__main__":
    sys.exit(main())
