"""ONNX Runtime sessions of a bundle: created once, lazily, with options chosen by measurement.

The defaults come from `python -m bench sessions` (figures in docs/PERFORMANCE.md, reasons in
docs/DECISIONS.md): one intra-op thread per session, because the engine runs models side by
side (alertfusion.engine) and DenseNet-121 at batch 1 does not get faster with two threads; no
spinning, so an idle pool never takes the core another model needs; graph optimisation level
"all" (the QDQ -> QLinearConv fusions and layout transforms are what make the int8 DenseNet
fast); no memory-reuse planning (it slows DenseNet's session creation) and no memory patterns
(a block cached per input shape, and text lengths vary); neither changed the run time or
lowered the peak RSS consistently. `create_all` builds the sessions on two threads, which
shortens a fresh process's start.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from alertfusion.errors import BundleError, ReasonCode

if TYPE_CHECKING:
    import numpy as np

    from alertfusion.bundle import Bundle
    from alertfusion.manifest_v2 import ModelFile

#: today's system's models (a bundle's own are `BundleSessions.names`)
MODEL_NAMES: tuple[str, str, str] = ("audio_binary", "audio_multiclass", "text")


@dataclass(frozen=True)
class SessionOptions:
    """The knobs that matter on CPU (see the module docstring)."""

    #: intra-op threads per session (0: ONNX Runtime's default, one per core)
    intra_op_threads: int = 1
    #: ORT_SEQUENTIAL: these graphs are chains, a parallel executor only adds overhead
    parallel_execution: bool = False
    #: the CPU arena keeps freed blocks for reuse (without it, RSS and latency were higher)
    cpu_mem_arena: bool = True
    #: pre-planned buffers per input shape; shapes vary here (text length, windows)
    mem_pattern: bool = False
    #: let intermediate tensors share buffers (planned when the session is created)
    mem_reuse: bool = False
    #: "all" (ORT_ENABLE_ALL), "extended", "basic" or "disabled"
    optimization: str = "all"
    #: intra-op threads busy-wait for work between ops (costs a core while idle)
    allow_spinning: bool = False
    #: ONNX Runtime optimizers not to run. SkipLayerNormFusion: ORT 1.31's CPU
    #: SkipLayerNormalization kernel is slower than the Add + LayerNormalization it replaces
    #: (no effect on graphs fused offline; docs/DECISIONS.md)
    disabled_optimizers: tuple[str, ...] = ("SkipLayerNormFusion",)


def ort_session_options(options: SessionOptions) -> Any:
    import onnxruntime as ort

    levels = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = options.intra_op_threads
    so.inter_op_num_threads = 1
    so.execution_mode = (
        ort.ExecutionMode.ORT_PARALLEL
        if options.parallel_execution
        else ort.ExecutionMode.ORT_SEQUENTIAL
    )
    so.enable_cpu_mem_arena = options.cpu_mem_arena
    so.enable_mem_pattern = options.mem_pattern
    so.enable_mem_reuse = options.mem_reuse
    so.graph_optimization_level = levels[options.optimization]
    spin = "1" if options.allow_spinning else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", spin)
    so.add_session_config_entry("session.inter_op.allow_spinning", spin)
    return so


def create_session(model: bytes | str | os.PathLike[str], options: SessionOptions) -> Any:
    """One CPU InferenceSession from a model file or its bytes."""
    import onnxruntime as ort

    source = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(
        source,
        ort_session_options(options),
        providers=["CPUExecutionProvider"],
        disabled_optimizers=list(options.disabled_optimizers) or None,
    )


class BundleSessions:
    """The sessions of one bundle's models, each created on first use (once per process, even
    under concurrent first calls) and checked against the manifest's input/output names and
    shapes."""

    def __init__(
        self,
        bundle: Bundle,
        options: SessionOptions,
        overrides: dict[str, SessionOptions] | None = None,
    ) -> None:
        self._bundle = bundle
        self._options = options
        self._overrides = dict(overrides or {})
        self._sessions: dict[str, Any] = {}
        #: the bundle's model names
        self.names: tuple[str, ...] = tuple(bundle.entries)
        self._locks = {name: threading.Lock() for name in self.names}
        #: models served from their fp32 fallback file instead (use_fallback)
        self.fallback: frozenset[str] = frozenset()
        #: wall-clock ms each session took to create (cold-start accounting)
        self.created_ms: dict[str, float] = {}

    @property
    def options(self) -> SessionOptions:
        return self._options

    def options_for(self, name: str) -> SessionOptions:
        return self._overrides.get(name, self._options)

    def loaded(self, name: str | None = None) -> bool:
        if name is not None:
            return name in self._sessions
        return all(n in self._sessions for n in self.names)

    def get(self, name: str) -> Any:
        found = self._sessions.get(name)
        if found is not None:
            return found
        with self._locks[name]:
            found = self._sessions.get(name)
            if found is None:
                start = time.perf_counter()
                found = self._create(name)
                self.created_ms[name] = (time.perf_counter() - start) * 1e3
                self._sessions[name] = found
        return found

    def create_all(
        self, submit: Callable[[Callable[[], None]], Future[None]] | None = None
    ) -> None:
        """Create every missing session; with `submit` (a one-thread executor's), on this
        thread and that one, each taking the next model until none is left."""
        work = Work()
        todo = [name for name in self.names if not self.loaded(name)]
        for name in todo:
            work.add(partial(self.get, name))
        if submit is not None and len(todo) > 1:
            submit(work.drain)
        work.finish()

    def use_fallback(self, names: list[str]) -> None:
        """Serve `names` from their fp32 fallback files (their sessions are made again)."""
        for name in names:
            entry = self._bundle.entries[name]
            if entry.fp32_fallback is None:
                raise BundleError(
                    f"{name} has no fp32 fallback in this bundle", code=ReasonCode.BUNDLE_INVALID
                )
        for name in names:
            with self._locks[name]:
                self._sessions.pop(name, None)
        self.fallback = self.fallback | frozenset(names)

    def _create(self, name: str) -> Any:
        entry = self._bundle.entries[name]
        fallback = entry.fp32_fallback if name in self.fallback else None
        path = self._bundle.path(fallback.file if fallback is not None else entry.file)
        try:
            session = create_session(path, self.options_for(name))
        except Exception as exc:  # onnxruntime raises its own (unexported) exception types
            raise BundleError(
                f"{name}: ONNX Runtime cannot load {entry.file}: {exc}",
                code=ReasonCode.BUNDLE_INVALID,
            ) from exc
        inputs = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        if sorted(inputs) != sorted(entry.input_names) or outputs[: len(entry.output_names)] != (
            entry.output_names
        ):
            raise BundleError(
                f"{name}: {entry.file} has inputs {inputs} and outputs {outputs}; the manifest "
                f"says {entry.input_names} and {entry.output_names}",
                code=ReasonCode.BUNDLE_INVALID,
            )
        if self._bundle.v2 is not None:  # the shapes the v2 manifest promises
            _check_shapes(name, self._bundle.v2.models[name], session)
        return session

    def run(self, name: str, feeds: dict[str, np.ndarray], run_options: Any = None) -> np.ndarray:
        """The first output of model `name` for `feeds`."""
        entry = self._bundle.entries[name]
        out = self.get(name).run(entry.output_names[:1], feeds, run_options)
        return out[0]


def _check_shapes(name: str, entry: ModelFile, session: Any) -> None:
    """The model file's input and output shapes against the manifest's (a size where both
    have one must agree; a file is not trusted to be the model the manifest describes)."""
    found = {i.name: i.shape for i in session.get_inputs()}
    found_output = {o.name: o.shape for o in session.get_outputs()}.get(entry.output_names[0])
    pairs = [(f"input {k}", found.get(k), v) for k, v in entry.input_shapes.items()]
    pairs.append((f"output {entry.output_names[0]}", found_output, entry.output_shape))
    for what, have, want in pairs:
        if not have:  # no shape in the graph
            continue
        sizes = [d if isinstance(d, int) else None for d in have]
        if len(sizes) != len(want) or any(
            a is not None and b is not None and a != b for a, b in zip(sizes, want, strict=True)
        ):
            raise BundleError(
                f"{name}: {entry.file} has {what} of shape {list(have)}; the manifest says {want}",
                code=ReasonCode.BUNDLE_INVALID,
            )


class Work:
    """Model runs (or session creations) that the calling thread and a helper thread both
    drain: `add` tasks, hand `drain` to the helper, then `finish` on the calling thread runs
    what is left, waits for what the helper took and raises the first error."""

    def __init__(self) -> None:
        self._tasks: deque[Callable[[], None]] = deque()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._running = 0
        self._error: BaseException | None = None
        self._first: float | None = None
        self._last: float | None = None

    def add(self, task: Callable[[], None]) -> None:
        with self._lock:
            self._tasks.append(task)

    def timed(self, fn: Callable[..., np.ndarray], *args: Any) -> np.ndarray:
        start = time.perf_counter()
        out = fn(*args)
        end = time.perf_counter()
        with self._lock:
            self._first = start if self._first is None else min(self._first, start)
            self._last = end if self._last is None else max(self._last, end)
        return out

    @property
    def span_ms(self) -> float:
        """Wall-clock ms from the first model run's start to the last one's end."""
        if self._first is None or self._last is None:
            return 0.0
        return (self._last - self._first) * 1e3

    def drain(self) -> None:
        while True:
            with self._lock:
                if not self._tasks or self._error is not None:
                    return
                task = self._tasks.popleft()
                self._running += 1
            try:
                task()
            except BaseException as exc:
                with self._lock:
                    if self._error is None:
                        self._error = exc
            finally:
                with self._lock:
                    self._running -= 1
                    self._idle.notify_all()

    def finish(self) -> None:
        self.drain()
        with self._lock:
            while self._running:
                self._idle.wait()
            error, self._error = self._error, None
            if error is not None:
                self._tasks.clear()
        if error is not None:
            raise error

    def abandon(self) -> None:
        """Drop what has not started (the request failed); what runs finishes on its own."""
        with self._lock:
            self._tasks.clear()
