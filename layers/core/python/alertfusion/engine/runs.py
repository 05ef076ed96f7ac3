"""How the engine uses the CPU (`Tuning`) and the work of one request: the audio stages' output
and the text model on the engine's worker."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from alertfusion.sessions import SessionOptions

if TYPE_CHECKING:
    import numpy as np

    from alertfusion.engine.core import Engine
    from alertfusion.text import EncodedText


@dataclass(frozen=True)
class Tuning:
    """How the engine uses the CPU; the defaults are the measured best on 2 vCPUs
    (`python -m bench sessions`, docs/DECISIONS.md)."""

    #: the text model and queued model runs also go to the engine's worker thread (module
    #: docstring); False: everything on the calling thread, one model after the other, each
    #: with one intra-op thread per core unless `threads` says otherwise
    concurrent: bool = True
    #: gate on: start the text model before the gate answers (cancelled if the gate stops
    #: every window); trades CPU on regular audio for latency on alerts
    speculative_text: bool = False
    session: SessionOptions = field(default_factory=SessionOptions)
    #: the text model's own options (None: `session`)
    text_session: SessionOptions | None = None


@dataclass
class AudioRun:
    """What the audio stages of one request produced."""

    gate_logits: np.ndarray
    audio_logits: dict[int, np.ndarray]
    spans_s: list[tuple[float, float]]
    features_ms: float
    audio_ms: float
    text_job: TextJob | None


class TextJob:
    """The text model submitted to the engine's worker; `cancel` stops it even mid-run
    (ONNX Runtime checks the run's terminate flag between operators)."""

    def __init__(self, engine: Engine, transcript: str, name: str = "text") -> None:
        import onnxruntime as ort

        self._engine = engine
        self._transcript = transcript
        self._name = name
        self._run_options = ort.RunOptions()
        self._future: Future[tuple[EncodedText | None, np.ndarray | None, float]] = (
            engine._executor().submit(engine._run_text, transcript, self._run_options, name)
        )
        self._done: tuple[EncodedText | None, np.ndarray | None, float] | None = None

    def result(self) -> tuple[EncodedText | None, np.ndarray | None, float]:
        """The tokens, logits and milliseconds (the same answer however often asked)."""
        if self._done is None:
            if self._future.cancel():
                # still queued (the worker serves another request): run it here instead
                self._done = self._engine._run_text(self._transcript, None, self._name)
            else:
                self._done = self._future.result()
        return self._done

    def cancel(self) -> None:
        if not self._future.cancel():
            self._run_options.terminate = True
