"""A recipe's windows combined into the verdict (decision.aggregate) and the result model.

* ``max_alert``: the window with the highest alert probability (the sum of its alert labels'
  probabilities) decides, windows the gate stopped ranking below the others, the earliest on a
  tie: today's rule, so a short scream in a long recording is not averaged away. A stopped
  window's alert probability is the gate's 1 - p(its label).
* ``mean``: the mean of the windows' probabilities (a stopped window counts as all on the
  gate's label); the window that most supports the verdict is reported as selected.
* ``share``: each window's top label counts its duration; the verdict is the label with the
  largest share of time, and the result's probabilities are those shares (also `shares`).
* ``whole``: the one window of a whole-clip recipe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alertfusion.result import (
    AudioResult,
    ClassificationResult,
    DecidedBy,
    GateOutcome,
    ModelInfo,
    TextResult,
    Timings,
    WindowResult,
)

if TYPE_CHECKING:
    import numpy as np

    from alertfusion.engine.core import Engine, Gate
    from alertfusion.engine.recipe_path import Window
    from alertfusion.recipe.schema import Recipe


def _named(names: list[str], values: np.ndarray | None) -> dict[str, float] | None:
    if values is None:
        return None
    return {n: float(v) for n, v in zip(names, values, strict=True)}


def _clamp01(x: float) -> float:
    return min(1.0, max(0.0, x))


def _alert(recipe: Recipe, names: list[str], p: np.ndarray) -> float:
    alerts = set(recipe.decision.alert_labels)
    return _clamp01(float(sum(p[i] for i, n in enumerate(names) if n in alerts)))


def _window_alert(recipe: Recipe, names: list[str], w: Window) -> float:
    from alertfusion.engine.recipe_path import probabilities

    gate = recipe.decision.gate
    if w.stopped and gate is not None:
        spec = recipe.models[gate.model]
        p = probabilities(spec, w.outputs[gate.model])
        return _clamp01(1.0 - float(p[spec.label_names.index(gate.label)]))
    assert w.probabilities is not None
    return _alert(recipe, names, w.probabilities)


def _top(probabilities: dict[str, float]) -> str:
    return max(probabilities, key=lambda k: probabilities[k])


def _decided_by(recipe: Recipe, w: Window, text_used: bool) -> DecidedBy:
    if w.stopped:
        return "gate"
    fused = [m for m in recipe.decision.fusion.models if m in w.outputs]
    return "fusion" if len(fused) + int(text_used) > 1 else "audio_only"


def _gate_outcome(recipe: Recipe, w: Window) -> GateOutcome | None:
    from alertfusion.engine.recipe_path import probabilities

    gate = recipe.decision.gate
    if gate is None or gate.model not in w.outputs:
        return None
    spec = recipe.models[gate.model]
    row = w.outputs[gate.model]
    p = probabilities(spec, row)
    named = _named(spec.label_names, p)
    assert named is not None
    return GateOutcome(
        label=spec.label_names[int(p.argmax())],
        probabilities=named,
        logits=[float(x) for x in row],
    )


def build_recipe_result(
    engine: Engine,
    windows: list[Window],
    *,
    text_out: dict[str, np.ndarray],
    encoded: object,
    skipped: str | None,
    no_text_detail: str | None,
    gate: Gate,
    duration_s: float,
    dropped_tail_s: float,
) -> ClassificationResult:
    import numpy as np

    from alertfusion.engine.recipe_path import probabilities

    recipe = engine.spec.recipe
    decision = recipe.decision
    labels = recipe.labels
    names = [label.name for label in labels]
    text_used = skipped is None and bool(text_out)
    audio_model = next(m for m in decision.fusion.models if recipe.models[m].source == "features")
    rows = []
    probs: list[np.ndarray] = []
    for win in windows:
        assert win.probabilities is not None
        probs.append(win.probabilities)
        a = win.outputs.get(audio_model)
        rows.append(
            WindowResult(
                index=win.index,
                start_s=round(win.start_s, 6),
                end_s=round(win.end_s, 6),
                gate=_gate_outcome(recipe, win),
                audio_probabilities=None
                if a is None
                else _named(names, probabilities(recipe.models[audio_model], a)),
                audio_logits=None if a is None else [float(x) for x in a],
                label=names[int(win.probabilities.argmax())],
                decided_by=_decided_by(recipe, win, text_used),
                probabilities=None if win.stopped else _named(names, win.probabilities),
                emergency_probability=_window_alert(recipe, names, win),
            )
        )
    shares: dict[str, float] | None = None
    aggregate = decision.aggregate
    if aggregate in ("max_alert", "whole"):
        selected = max(
            range(len(rows)),
            key=lambda i: (not windows[i].stopped, rows[i].emergency_probability, -i),
        )
        final = None if windows[selected].stopped else probs[selected]
        label = rows[selected].label
        alert = rows[selected].emergency_probability
    else:
        if aggregate == "mean":
            final = np.mean(probs, axis=0)
        else:
            spans = np.array([w.end_s - w.start_s for w in windows])
            final = np.zeros(len(names))
            for p, seconds in zip(probs, spans, strict=True):
                final[int(p.argmax())] += seconds
            final /= max(float(spans.sum()), 1e-12)
            shares = _named(names, final)
        label = names[int(final.argmax())]
        k = names.index(label)
        selected = max(range(len(windows)), key=lambda i: (float(probs[i][k]), -i))
        alert = _alert(recipe, names, final)
    chosen = rows[selected]
    decided_by: DecidedBy
    if aggregate in ("max_alert", "whole") or all(x.stopped for x in windows):
        decided_by = chosen.decided_by
    else:
        decided_by = "fusion" if any(r.decided_by == "fusion" for r in rows) else "audio_only"
    display = {lab.name: lab.shown for lab in labels}
    text_view = _text_result(engine, text_out, encoded, skipped, no_text_detail)
    fallback = engine.sessions.fallback
    return ClassificationResult(
        label=label,
        label_ko=display[label],
        is_emergency=label in decision.alert_labels,
        decided_by=decided_by,
        emergency_probability=alert,
        probabilities=_named(names, final),
        explanation=_explain(recipe, rows, selected, label, text_view, dropped_tail_s, gate),
        aggregation="max_emergency_window" if aggregate == "max_alert" else aggregate,
        shares=shares,
        selected_window=selected,
        audio=AudioResult(
            gate=chosen.gate,
            label=label if chosen.audio_probabilities is None else _top(chosen.audio_probabilities),
            probabilities=chosen.audio_probabilities,
            logits=chosen.audio_logits,
        ),
        text=text_view,
        windows=rows,
        duration_s=round(duration_s, 6),
        model=ModelInfo(
            bundle_version=engine.spec.bundle_version,
            trained=engine.spec.trained,
            manifest_schema_version=engine.bundle.schema_version,
            quantization={
                name: "none" if name in fallback else entry.quantization
                for name, entry in engine.spec.models.items()
            },
            gate=gate if decision.gate is not None else "none",
            mel_transform="-",
            layout="-",
            recipe=recipe.name,
        ),
        timings=Timings(),
    )


def _text_result(
    engine: Engine,
    text_out: dict[str, np.ndarray],
    encoded: object,
    skipped: str | None,
    no_text_detail: str | None,
) -> TextResult:
    from alertfusion.engine.recipe_path import probabilities
    from alertfusion.text import EncodedText

    recipe = engine.spec.recipe
    tokens = encoded.n_tokens if isinstance(encoded, EncodedText) else None
    if skipped == "NO_TEXT_MODEL":
        return TextResult(
            status="skipped", skipped_reason="NO_TEXT_MODEL", detail="the recipe has no text model"
        )
    if skipped == "NO_TEXT":
        return TextResult(
            status="skipped",
            skipped_reason="NO_TEXT",
            detail=f"{no_text_detail}: the verdict is audio-only",
        )
    if skipped == "GATE_REGULAR" or not text_out:
        gate = recipe.decision.gate
        return TextResult(
            status="skipped",
            skipped_reason="GATE_REGULAR",
            detail=f"the audio gate judged every window {gate.label if gate else 'empty'!r}, "
            "so the text model was not needed",
            n_tokens=tokens,
        )
    name, row = next(iter(text_out.items()))
    spec = recipe.models[name]
    p = probabilities(spec, row)
    return TextResult(
        status="used",
        label=spec.label_names[int(p.argmax())],
        probabilities=_named(spec.label_names, p),
        logits=[float(x) for x in row],
        n_tokens=tokens,
    )


def _explain(
    recipe: Recipe,
    rows: list[WindowResult],
    selected: int,
    label: str,
    text: TextResult,
    dropped_tail_s: float,
    gate: Gate,
) -> str:
    w = rows[selected]
    n = len(rows)
    aggregate = recipe.decision.aggregate
    if aggregate in ("max_alert", "whole"):
        where = (
            f"window {w.index + 1} of {n} ({w.start_s:.1f}-{w.end_s:.1f} s), the one with the "
            f"highest alert probability ({w.emergency_probability:.3f}),"
            if n > 1
            else f"the recording ({w.end_s:.1f} s, one window)"
        )
        parts = [f"Recipe {recipe.name}: {where} decides: {label}."]
    elif aggregate == "mean":
        parts = [f"Recipe {recipe.name}: the mean over {n} windows says {label}."]
    else:
        parts = [f"Recipe {recipe.name}: {label} has the largest share of the time ({n} windows)."]
    if text.status == "skipped" and text.detail and text.skipped_reason != "NO_TEXT_MODEL":
        parts.append(f"Text model skipped: {text.detail}.")
    if gate == "none" and recipe.decision.gate is not None:
        parts.append("The gate is off: every model ran on every window.")
    if dropped_tail_s > 0:
        parts.append(
            f"The last {dropped_tail_s:.2f} s (shorter than the minimum window) was not scored."
        )
    return " ".join(parts)
