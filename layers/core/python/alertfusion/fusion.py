"""Late fusion in numpy: softmax, the L2-normalised logit sum, the gate and window selection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from alertfusion.errors import AlertFusionError, ReasonCode

if TYPE_CHECKING:
    import numpy as np

DecidedBy = Literal["gate", "fusion", "audio_only"]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in float64 (max-shifted, so large logits do not overflow)."""
    import numpy as np

    x = np.asarray(logits, dtype=np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def l2_normalised(logits: np.ndarray) -> np.ndarray:
    """`logits / ||logits||_2` over the last axis; an all-zero vector stays zero (it carries no
    preference, and 0/0 would poison the sum with NaN)."""
    import numpy as np

    x = np.asarray(logits, dtype=np.float64)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def fuse(audio_logits: np.ndarray, text_logits: np.ndarray | None) -> np.ndarray:
    """docs/REFERENCE_MODEL.md: `softmax(a/||a|| + t/||t||)` per row of `audio_logits` (N, C)
    with the one text vector `t` (C,); with no text, the audio model's own `softmax(a)`."""
    if text_logits is None:
        return softmax(audio_logits)
    return softmax(l2_normalised(audio_logits) + l2_normalised(text_logits))


def check_logits(name: str, logits: np.ndarray, rows: int, classes: int) -> None:
    """A model's output must be (rows, classes) and finite; anything else is a defect of the
    bundle or the runtime, never something to turn into a verdict."""
    import numpy as np

    if logits.shape != (rows, classes) or not np.isfinite(logits).all():
        raise AlertFusionError(
            f"the {name} model returned {'non-finite ' if logits.shape == (rows, classes) else ''}"
            f"logits of shape {tuple(logits.shape)}, expected ({rows}, {classes})",
            code=ReasonCode.INTERNAL,
        )


@dataclass(frozen=True)
class WindowDecision:
    """One window's verdict: `probabilities` is None when the gate decided it."""

    label_index: int
    decided_by: DecidedBy
    emergency_probability: float
    probabilities: np.ndarray | None
    #: binary gate probabilities, None with the gate off
    gate_probabilities: np.ndarray | None
    #: the 6-class audio model's own softmax, None when the gate stopped the window
    audio_probabilities: np.ndarray | None


def gate_passed(gate_logits: np.ndarray, regular_index: int) -> np.ndarray:
    """Which windows the binary model sends on: argmax is not `regular` (a tie stays regular)."""
    import numpy as np

    probs = softmax(gate_logits)
    regular = probs[:, regular_index]
    others = np.delete(probs, regular_index, axis=1).max(axis=1)
    return np.asarray(others > regular)


def decide_windows(
    *,
    n_windows: int,
    regular_index: int,
    gate_logits: np.ndarray | None,
    audio_logits: dict[int, np.ndarray],
    text_logits: np.ndarray | None,
) -> list[WindowDecision]:
    """Each window's decision (see alertfusion.result's module docstring).

    `gate_logits` (N, 2) or None with the gate off; `audio_logits` maps the index of every
    window that reached the 6-class model to its logits (C,): with the gate off that is every
    window, with it on exactly the windows `gate_passed` lets through.
    """
    import numpy as np

    gate_probs = softmax(gate_logits) if gate_logits is not None else None
    decisions = []
    for i in range(n_windows):
        g = gate_probs[i] if gate_probs is not None else None
        a = audio_logits.get(i)
        if a is None:
            if g is None:
                raise ValueError(f"window {i} has neither gate nor audio logits")
            decisions.append(
                WindowDecision(
                    label_index=regular_index,
                    decided_by="gate",
                    emergency_probability=_clamp01(1.0 - float(g[regular_index])),
                    probabilities=None,
                    gate_probabilities=g,
                    audio_probabilities=None,
                )
            )
            continue
        p = fuse(a[np.newaxis], text_logits)[0]
        decisions.append(
            WindowDecision(
                label_index=int(np.argmax(p)),
                decided_by="fusion" if text_logits is not None else "audio_only",
                emergency_probability=_clamp01(1.0 - float(p[regular_index])),
                probabilities=p,
                gate_probabilities=g,
                audio_probabilities=softmax(a),
            )
        )
    return decisions


def select_window(decisions: list[WindowDecision]) -> int:
    """The window that decides the recording: windows scored by the 6-class model rank above
    windows the gate stopped, then the highest emergency probability wins (the earliest on a
    tie), so a short scream in a long recording is not averaged away."""
    if not decisions:
        raise ValueError("no windows to select from")
    return max(
        range(len(decisions)),
        key=lambda i: (
            decisions[i].decided_by != "gate",
            decisions[i].emergency_probability,
            -i,
        ),
    )


def _clamp01(x: float) -> float:
    # 1 - p can come out as -1e-17 or 1 + 1e-16 in floating point
    return min(1.0, max(0.0, x))
