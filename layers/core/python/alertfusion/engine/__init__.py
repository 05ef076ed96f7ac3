"""The inference engine: audio (+ transcript) -> ClassificationResult, with ONNX Runtime.

One `Engine` per process (`get_engine()`), built from a bundle directory or an s3:// URI. The
bundle's files are hash-checked when the engine is made; the three ONNX Runtime sessions and
the tokenizer are created on first use (or by `warm_up()`), once. How a verdict is made is
alertfusion.result's module docstring; the session options are alertfusion.sessions'.

Scheduling (chosen by measurement on 2 vCPUs, docs/DECISIONS.md): every session runs with one
intra-op thread, and a request uses two threads, the caller's and the engine's one worker. The
text model does not depend on the audio, so it starts on the worker before decoding; the
caller decodes, builds each window's image and queues that window's model runs, and takes them
from the queue itself while the worker joins in once the text model is done. A 5 s clip thus
runs its two DenseNets on the caller beside BERT on the worker; a 25 s clip's ten DenseNet runs
spread over both. With the gate on, the text model starts only when some window passed the
gate (starting it speculatively is `Tuning.speculative_text`: it costs more on regular audio
than it saves on alerts).

Windows: consecutive `window_seconds` windows as in training. A trailing window shorter than
`min_window_seconds` (default `limits.MIN_WINDOW_SECONDS`, the shortest recording the service
accepts at all) is not scored unless it is the only window: such a tail is a few STFT frames
stretched to 64 pixels, and under "the highest emergency window decides" noise like that must
not decide a verdict.
The result's explanation says when a tail was left out.
"""

from alertfusion.engine.core import Engine, Gate, Tuning
from alertfusion.engine.process import current_engine, get_engine, recheck_engine, reset_engine

__all__ = [
    "Engine",
    "Gate",
    "Tuning",
    "current_engine",
    "get_engine",
    "recheck_engine",
    "reset_engine",
]
