"""Real process death: one handler invocation in a child process, killed (SIGKILL) at a named
point, against the local stack's AWS (moto keeps its state: it runs in another process).

    python -m devstack.child SPEC.json

The spec names the function (``starter``, ``classifier``, ``sweeper``), the event, and
optionally where to die: ``pause`` = ``{"target": "module:Qualified.name", "when":
"before"|"after"}``. At that call the child writes the ``marker`` file and waits; the parent
(`ChildInvocation`) kills it there, which is what a Lambda timeout or a crashed sandbox does:
no ``finally``, no exception handler, no flush. Without a pause the child runs the handler
and writes its answer to ``result``. The environment (AWS endpoint, pipeline settings,
MODEL_BUNDLE) is the parent's.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Function = Literal["starter", "classifier", "sweeper"]
#: where the soak and the tests kill handlers: after a side effect the retry must find
#: (a Transcribe job started, a verdict written, a result file written), before the step
#: that records it
KILL_POINTS: dict[Function, list[dict[str, str]]] = {
    "starter": [
        {"target": "alertfusion.pipeline.starter:_send_task", "when": "before"},
        {"target": "alertfusion.jobs.store:JobStore.mark_transcribing", "when": "before"},
        {"target": "alertfusion.jobs.store:JobStore.receive", "when": "after"},
    ],
    "classifier": [
        {"target": "alertfusion.jobs.store:JobStore.set_preliminary", "when": "after"},
        {"target": "alertfusion.notify:send_emergency", "when": "before"},
        {"target": "alertfusion.pipeline.stages:_write_result_file", "when": "after"},
        {"target": "alertfusion.jobs.store:JobStore.finish", "when": "after"},
    ],
}


def _resolve(target: str) -> tuple[Any, str]:
    """(the object holding the attribute, the attribute's name) of ``module:A.b``."""
    module_name, _, path = target.partition(":")
    owner: Any = importlib.import_module(module_name)
    *parents, name = path.split(".")
    for part in parents:
        owner = getattr(owner, part)
    getattr(owner, name)  # fail early on a name that does not exist
    return owner, name


def _install_pause(target: str, when: str, marker: Path) -> None:
    owner, name = _resolve(target)
    original = getattr(owner, name)

    def stop_here() -> None:
        marker.write_text(str(os.getpid()))
        while True:  # the parent kills the process here
            time.sleep(3600)

    def paused(*args: Any, **kwargs: Any) -> Any:
        if when == "before":
            stop_here()
        result = original(*args, **kwargs)
        stop_here()
        return result

    setattr(owner, name, paused)


def _handler(function: Function) -> Any:
    if function == "starter":
        from functions.starter.app import handler
    elif function == "classifier":
        from functions.classifier.app import handler
    else:
        from functions.sweeper.app import handler
    return handler


def main(argv: list[str] | None = None) -> int:
    from devstack.handlers import LambdaContext

    spec = json.loads(Path((argv or sys.argv[1:])[0]).read_text("utf-8"))
    handler = _handler(spec["function"])
    pause = spec.get("pause")
    if pause:
        _install_pause(pause["target"], pause.get("when", "before"), Path(spec["marker"]))
    context = LambdaContext(function_name=f"local-{spec['function']}")
    try:
        answer: dict[str, Any] = {"ok": True, "response": handler(spec["event"], context)}
    except Exception as exc:  # what Lambda reports as the invocation's error
        answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    Path(spec["result"]).write_text(json.dumps(answer, default=str), "utf-8")
    return 0


@dataclass
class ChildOutcome:
    """How a child invocation ended."""

    killed: bool
    #: the handler's answer ({"ok", "response"|"error"}) when it ran to the end
    answer: dict[str, Any] | None
    returncode: int | None
    stderr: str


class ChildInvocation:
    """Runs one invocation in a child process; kills it with SIGKILL once it reaches its
    pause point (if it has one)."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env

    def run(
        self,
        function: Function,
        event: dict[str, Any],
        *,
        pause: dict[str, str] | None = None,
        timeout: float = 120.0,
    ) -> ChildOutcome:
        name = uuid.uuid4().hex[:12]
        spec_file = self.workdir / f"{name}.spec.json"
        marker = self.workdir / f"{name}.paused"
        result = self.workdir / f"{name}.result.json"
        spec_file.write_text(
            json.dumps(
                {
                    "function": function,
                    "event": event,
                    "pause": pause,
                    "marker": str(marker),
                    "result": str(result),
                }
            ),
            "utf-8",
        )
        env = {**os.environ, **self.env}
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack.child", str(spec_file)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + timeout
        killed = False
        while process.poll() is None:
            if marker.exists():
                os.kill(process.pid, signal.SIGKILL)
                killed = True
                break
            if time.monotonic() > deadline:
                process.kill()
                break
            time.sleep(0.02)
        _, stderr = process.communicate(timeout=30)
        answer = json.loads(result.read_text("utf-8")) if result.exists() else None
        return ChildOutcome(killed, answer, process.returncode, stderr[-4000:])


if __name__ == "__main__":
    sys.exit(main())
