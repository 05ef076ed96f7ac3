"""int8 against fp32, judged by margins: one rule for the build, the tests, the bench and the
serving CPU's self-check.

int8 kernels differ by instruction set (AVX2 without VNNI, AVX-512 VNNI, AMX, arm64 dot
products), so one int8 model gives slightly different numbers on each CPU. Counting raw top-1
agreement makes a near tie in fp32 decide a pass or a failure by rounding. Here a decision is
*decisive* when fp32's margin is larger than the most the model's int8 error can move it;
decisive decisions must agree, and near ties are reported with their margin, never counted as
agreement and never failing.

Two measures of one input's error, the logit difference ``d = int8 - fp32``:

* its *spread* ``max(d) - min(d)``: the difference of two logits moves by at most the spread,
  so a top-1 decision is decisive when fp32's margin exceeds it; a softmax probability moves by
  at most ``tanh(spread / 4)`` (`probability_bound`): ``p_k = sigmoid(z_k - logsumexp(z_j,
  j != k))`` and that argument moves by at most the spread;
* its L2 norm, for the fused ``a/||a|| + t/||t||`` (normalising is not shift-invariant):
  ``x / ||x||`` moves by at most ``2e / (2||x|| - e)`` in L2 (`normalised_error`, the
  inner-product form of the Dunkl-Williams inequality with ``||y|| >= ||x|| - e``, never more
  than 2), and a vector that moves by ``e`` in L2 has a spread of at most ``sqrt(2) * e``.

A model's tolerance is the largest of each measured on it (`Tolerance`); where no separate
measurement exists (the build's own calibration inputs), each input is judged with the largest
spread of the *other* inputs (`judge_logits` without a tolerance), so a disagreement is real
when that input's int8 error is larger than every other input's: the rule cannot be satisfied
by the very error it judges.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import numpy as np

    from alertfusion.manifest import Manifest
    from alertfusion.manifest_v2 import ManifestV2
    from alertfusion.result import ClassificationResult

Status = Literal["agree", "disagree", "near_tie"]


@dataclass(frozen=True)
class Tolerance:
    """A model's int8 error: the largest spread and the largest L2 norm of (int8 - fp32)."""

    spread: float
    l2: float

    @classmethod
    def exact(cls) -> Tolerance:
        return cls(0.0, 0.0)


def probability_bound(spread: float) -> float:
    """The most any softmax probability moves when no two logits move apart by more than
    `spread`."""
    return math.tanh(spread / 4.0)


def normalised_error(norm: float, error: float) -> float:
    """The most ``x / ||x||`` moves (L2) when ``x`` (of L2 norm `norm`) moves by `error`."""
    if error <= 0.0:
        return 0.0
    if 2.0 * norm <= error:
        return 2.0
    return min(2.0, 2.0 * error / (2.0 * norm - error))


def logit_errors(fp32: np.ndarray, int8: np.ndarray) -> np.ndarray:
    """Per input (row), the L2 norm of int8 - fp32; infinite where int8 is not finite."""
    import numpy as np

    a, b = _pair(fp32, int8)
    errors = np.linalg.norm(b - a, axis=1)
    errors[~np.isfinite(b).all(axis=1)] = np.inf
    return np.asarray(errors)


def logit_spreads(fp32: np.ndarray, int8: np.ndarray) -> np.ndarray:
    """Per input (row), max - min of int8 - fp32; infinite where int8 is not finite."""
    import numpy as np

    a, b = _pair(fp32, int8)
    d = b - a
    spreads = d.max(axis=1) - d.min(axis=1)
    spreads[~np.isfinite(b).all(axis=1)] = np.inf
    return np.asarray(spreads)


def measure(fp32: np.ndarray, int8: np.ndarray) -> Tolerance:
    """The largest spread and L2 error over the rows."""
    return Tolerance(float(logit_spreads(fp32, int8).max()), float(logit_errors(fp32, int8).max()))


def model_tolerances(manifest: Manifest | ManifestV2) -> dict[str, Tolerance]:
    """Each model's int8 tolerance from the bundle (what its build measured); exact for a
    model that is not quantized. A quantized model without measured errors (a bundle built
    before the margin rule) cannot be judged: ValueError naming it."""
    found: dict[str, Tolerance] = {}
    for name, entry in manifest.model_entries().items():
        report = entry.quantization_report
        if entry.quantization == "none":
            found[name] = Tolerance.exact()
        elif report is None or report.max_logit_error is None or report.max_logit_spread is None:
            raise ValueError(f"{name} is {entry.quantization} with no measured int8 error")
        else:
            found[name] = Tolerance(report.max_logit_spread, report.max_logit_error)
    return found


def top2_margin(scores: Sequence[float] | np.ndarray) -> float:
    """Best minus second best (infinite with fewer than two candidates)."""
    ordered = sorted((float(s) for s in scores), reverse=True)
    return ordered[0] - ordered[1] if len(ordered) > 1 else math.inf


@dataclass(frozen=True)
class Decision:
    """One decision of fp32 and of int8, and whether fp32's margin puts it beyond int8 error."""

    what: str
    fp32: str
    int8: str
    #: fp32's margin for this decision (best minus runner-up, in the decision's own units)
    margin: float
    #: the most the int8 error can move that margin
    bound: float

    @property
    def decisive(self) -> bool:
        return self.margin > self.bound

    @property
    def status(self) -> Status:
        if not self.decisive:
            return "near_tie"
        return "agree" if self.fp32 == self.int8 else "disagree"

    def describe(self) -> str:
        verdict = self.fp32 if self.fp32 == self.int8 else f"fp32 {self.fp32}, int8 {self.int8}"
        return f"{self.what}: {verdict} (margin {self.margin:.4g}, int8 can move {self.bound:.4g})"


@dataclass(frozen=True)
class Agreement:
    """Decisions judged by the margin rule."""

    decisions: tuple[Decision, ...]
    #: the largest error seen (logit spread, or emergency-probability shift for results)
    max_error: float = 0.0

    @property
    def decisive(self) -> list[Decision]:
        return [d for d in self.decisions if d.decisive]

    @property
    def disagreements(self) -> list[Decision]:
        return [d for d in self.decisions if d.status == "disagree"]

    @property
    def near_ties(self) -> list[Decision]:
        return [d for d in self.decisions if d.status == "near_tie"]

    @property
    def rate(self) -> float | None:
        """Agreement among decisive decisions; None when no decision was decisive."""
        decisive = self.decisive
        if not decisive:
            return None
        return sum(d.status == "agree" for d in decisive) / len(decisive)

    def ok(self, threshold: float = 1.0) -> bool:
        """Decisive decisions agree at least `threshold` of the time (near ties never fail)."""
        rate = self.rate
        return rate is None or rate >= threshold

    def __add__(self, other: Agreement) -> Agreement:
        return Agreement(self.decisions + other.decisions, max(self.max_error, other.max_error))

    def summary(self) -> str:
        rate = self.rate
        agreed = "no decisive decision" if rate is None else f"{rate:.2%} agree"
        return (
            f"{len(self.decisive)} of {len(self.decisions)} decisive, {agreed}, "
            f"{len(self.near_ties)} near ties, {len(self.disagreements)} disagreements"
        )


def judge_logits(
    fp32: np.ndarray,
    int8: np.ndarray,
    *,
    tolerance: float | None = None,
    labels: Sequence[str] | None = None,
) -> Agreement:
    """Each input's top-1 class, fp32 against int8. `tolerance`: the model's largest spread
    (`Tolerance.spread`) measured elsewhere; None judges each input with the largest spread of
    the other inputs (leave one out)."""
    import numpy as np

    a, b = _pair(fp32, int8)
    spreads = logit_spreads(a, b)
    decisions = []
    for i in range(len(a)):
        if tolerance is not None:
            bound = tolerance
        else:
            others = np.delete(spreads, i)
            bound = float(others.max()) if len(others) else math.inf
        decisions.append(
            Decision(
                what=f"input {i}",
                fp32=_name(int(np.argmax(a[i])), labels),
                int8=_name(int(np.argmax(b[i])), labels) if np.isfinite(b[i]).all() else "NaN",
                margin=top2_margin(a[i]),
                bound=bound,
            )
        )
    return Agreement(tuple(decisions), float(spreads.max()))


def judge_results(
    fp32: ClassificationResult,
    int8: ClassificationResult,
    tolerances: Mapping[str, Tolerance],
    *,
    name: str = "",
) -> Agreement:
    """One recording's verdicts: each window's gate and label, the selected window and the
    recording's label. `tolerances`: each model's by name (``audio_binary``,
    ``audio_multiclass``, ``text``; a missing one counts as exact). `max_error` of the answer
    is the largest emergency-probability shift seen."""
    import numpy as np

    if len(fp32.windows) != len(int8.windows):
        raise ValueError(f"{name}: {len(fp32.windows)} windows in fp32, {len(int8.windows)} int8")
    prefix = f"{name}: " if name else ""
    text_logits = fp32.text.logits if fp32.text.status == "used" else None
    gate_spread = tolerances.get("audio_binary", Tolerance.exact()).spread
    decisions: list[Decision] = []
    gates: dict[int, Decision] = {}
    labels: dict[int, Decision] = {}
    # the most each window's emergency probability can move
    shift: dict[int, float] = {}
    max_error = 0.0
    for w32, w8 in zip(fp32.windows, int8.windows, strict=True):
        i = w32.index
        if w32.gate is not None and w8.gate is not None:
            gates[i] = Decision(
                what=f"{prefix}window {i} gate",
                fp32=w32.gate.label,
                int8=w8.gate.label,
                margin=top2_margin(w32.gate.logits),
                bound=gate_spread,
            )
            decisions.append(gates[i])
        if w32.probabilities is not None and w32.audio_logits is not None:
            spread = _window_spread(w32.audio_logits, text_logits, tolerances)
            shift[i] = probability_bound(spread)
            if w8.probabilities is not None:
                log_p = np.log(np.maximum(list(w32.probabilities.values()), 1e-300))
                labels[i] = Decision(
                    what=f"{prefix}window {i} label",
                    fp32=w32.label,
                    int8=w8.label,
                    margin=top2_margin(log_p),
                    bound=spread,
                )
                decisions.append(labels[i])
        else:
            shift[i] = probability_bound(gate_spread)
        max_error = max(max_error, abs(w32.emergency_probability - w8.emergency_probability))

    selection = _judge_selection(fp32, int8, gates, shift, prefix)
    decisions.append(selection)
    chosen = labels.get(fp32.selected_window) or gates.get(fp32.selected_window)
    weakest = min(
        (d for d in (selection, chosen) if d is not None), key=lambda d: d.margin - d.bound
    )
    decisions.append(
        Decision(
            what=f"{prefix}label",
            fp32=fp32.label,
            int8=int8.label,
            margin=weakest.margin,
            bound=weakest.bound,
        )
    )
    return Agreement(tuple(decisions), max_error)


def _judge_selection(
    fp32: ClassificationResult,
    int8: ClassificationResult,
    gates: dict[int, Decision],
    shift: dict[int, float],
    prefix: str,
) -> Decision:
    """The window that decides: windows the 6-class model scored rank above those the gate
    stopped, then the highest emergency probability (alertfusion.fusion.select_window)."""
    windows = fp32.windows
    best = fp32.selected_window
    scored = {w.index: w.decided_by != "gate" for w in windows}
    p = {w.index: w.emergency_probability for w in windows}
    rivals = [w.index for w in windows if w.index != best and scored[w.index] == scored[best]]
    if rivals:
        runner_up = max(rivals, key=lambda j: p[j])
        margin, bound = p[best] - p[runner_up], shift[best] + shift[runner_up]
    else:
        margin, bound = math.inf, 0.0
    # A gate that may flip can move a window across the ranking's first key: the selected
    # window may fall, and any stopped window may rise.
    movable = [best, *(w.index for w in windows if not scored[w.index])]
    for j in movable if fp32.model.gate == "binary" else ():
        gate = gates.get(j)
        if gate is not None and not gate.decisive and gate.margin - gate.bound < margin - bound:
            margin, bound = gate.margin, gate.bound
    return Decision(
        what=f"{prefix}selected window",
        fp32=str(best),
        int8=str(int8.selected_window),
        margin=margin,
        bound=bound,
    )


def _window_spread(
    audio_logits: Sequence[float],
    text_logits: Sequence[float] | None,
    tolerances: Mapping[str, Tolerance],
) -> float:
    """The most two of a window's fused logits (or the audio model's own, without text) can
    move apart."""
    import numpy as np

    audio = tolerances.get("audio_multiclass", Tolerance.exact())
    if text_logits is None:
        return audio.spread
    text = tolerances.get("text", Tolerance.exact())
    l2 = normalised_error(float(np.linalg.norm(audio_logits)), audio.l2) + normalised_error(
        float(np.linalg.norm(text_logits)), text.l2
    )
    return math.sqrt(2.0) * l2


def _pair(fp32: np.ndarray, int8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    a, b = np.asarray(fp32, dtype=np.float64), np.asarray(int8, dtype=np.float64)
    if a.ndim != 2 or not len(a):
        raise ValueError(f"expected a non-empty (inputs, classes) array, got shape {a.shape}")
    if a.shape != b.shape:
        raise ValueError(f"output shapes differ: {a.shape} vs {b.shape}")
    return a, b


def _name(index: int, labels: Sequence[str] | None) -> str:
    return labels[index] if labels is not None else str(index)
