"""The verdict's model from the engine's per-window decisions: labels, the audio and text views,
the explanation (alertfusion.result describes the rules)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from alertfusion.result import (
    AudioResult,
    ClassificationResult,
    GateOutcome,
    ModelInfo,
    TextResult,
    Timings,
    WindowResult,
)

if TYPE_CHECKING:
    import numpy as np

    from alertfusion.engine.core import Gate
    from alertfusion.fusion import WindowDecision
    from alertfusion.manifest import Manifest
    from alertfusion.text import EncodedText


def build_result(
    manifest: Manifest,
    *,
    fallback: frozenset[str],
    decisions: list[WindowDecision],
    selected: int,
    spans: list[tuple[float, float]],
    gate: Gate,
    gate_logits: np.ndarray,
    audio_logits: dict[int, np.ndarray],
    text_logits: np.ndarray | None,
    encoded: EncodedText | None,
    skipped: str | None,
    no_text_detail: str | None,
    duration_s: float,
    dropped_tail_s: float,
    timings: Timings,
    schema_version: int = 1,
    recipe: str | None = None,
) -> ClassificationResult:
    labels = manifest.labels
    classes, binary = labels.classes, labels.binary
    windows = []
    for i, d in enumerate(decisions):
        gate_outcome = _gate_outcome(binary, labels.regular_index, gate_logits[i], d)
        a = audio_logits.get(i)
        windows.append(
            WindowResult(
                index=i,
                start_s=round(spans[i][0], 6),
                end_s=round(spans[i][1], 6),
                gate=gate_outcome,
                audio_probabilities=_named(classes, d.audio_probabilities),
                audio_logits=None if a is None else [float(x) for x in a],
                label=classes[d.label_index],
                decided_by=d.decided_by,
                probabilities=_named(classes, d.probabilities),
                emergency_probability=d.emergency_probability,
            )
        )
    chosen = decisions[selected]
    w = windows[selected]
    if w.audio_probabilities is not None and w.audio_logits is not None:
        audio = AudioResult(
            gate=w.gate,
            label=_argmax_label(w.audio_probabilities),
            probabilities=w.audio_probabilities,
            logits=w.audio_logits,
        )
    else:
        audio = AudioResult(gate=w.gate, label=classes[labels.regular_index])
    text_view = text_result(
        manifest,
        text_logits,
        encoded,
        skipped,
        no_text_detail,
        gate_decided=not audio_logits,
    )
    label = classes[chosen.label_index]
    return ClassificationResult(
        label=label,
        label_ko=labels.classes_ko[chosen.label_index],
        is_emergency=chosen.label_index != labels.regular_index,
        decided_by=chosen.decided_by,
        emergency_probability=chosen.emergency_probability,
        probabilities=w.probabilities,
        explanation=_explain(windows, selected, gate, text_view, dropped_tail_s),
        selected_window=selected,
        audio=audio,
        text=text_view,
        windows=windows,
        duration_s=round(duration_s, 6),
        model=ModelInfo(
            bundle_version=manifest.bundle_version,
            trained=manifest.trained,
            manifest_schema_version=schema_version,
            quantization={
                name: "none" if name in fallback else getattr(manifest.models, name).quantization
                for name in ("audio_binary", "audio_multiclass", "text")
            },
            gate=gate,
            mel_transform=manifest.audio.mel_transform,
            layout=manifest.audio.layout,
            recipe=recipe,
        ),
        timings=timings,
    )


def text_result(
    manifest: Manifest,
    text_logits: np.ndarray | None,
    encoded: EncodedText | None,
    skipped: str | None,
    no_text_detail: str | None,
    *,
    gate_decided: bool = False,
) -> TextResult:
    from alertfusion.fusion import softmax

    classes = manifest.labels.classes
    if skipped == "NO_TEXT":
        return TextResult(
            status="skipped",
            skipped_reason="NO_TEXT",
            detail=f"{no_text_detail}: the verdict is audio-only",
        )
    if skipped == "GATE_REGULAR" or text_logits is None or encoded is None:
        return TextResult(
            status="skipped",
            skipped_reason="GATE_REGULAR",
            detail="the binary audio gate judged every window regular, so the text model "
            "was not needed",
            n_tokens=encoded.n_tokens if encoded is not None else None,
        )
    probs = _named(classes, softmax(text_logits))
    assert probs is not None
    return TextResult(
        status="used",
        label=_argmax_label(probs),
        probabilities=probs,
        logits=[float(x) for x in text_logits],
        n_tokens=encoded.n_tokens,
        detail=(
            "the binary audio gate judged every window regular; the text model ran for the "
            "original response keys and did not change the verdict"
            if gate_decided
            else None
        ),
    )


def _named(labels: list[str], values: np.ndarray | None) -> dict[str, float] | None:
    if values is None:
        return None
    return {label: float(v) for label, v in zip(labels, values, strict=True)}


def _argmax_label(probabilities: dict[str, float]) -> str:
    return max(probabilities, key=lambda k: probabilities[k])


def _gate_outcome(
    binary: list[str], regular_index: int, logits: np.ndarray, d: WindowDecision
) -> GateOutcome | None:
    if d.gate_probabilities is None:
        return None
    probs = _named(binary, d.gate_probabilities)
    assert probs is not None
    regular = binary[regular_index]
    alert = max((k for k in probs if k != regular), key=lambda k: probs[k])
    return GateOutcome(
        label=alert if probs[alert] > probs[regular] else regular,
        probabilities=probs,
        logits=[float(x) for x in logits],
    )


def _explain(
    windows: list[WindowResult],
    selected: int,
    gate: Gate,
    text: TextResult,
    dropped_tail_s: float,
) -> str:
    w = windows[selected]
    n = len(windows)
    where = (
        f"window {w.index + 1} of {n} ({w.start_s:.1f}-{w.end_s:.1f} s), the one with the "
        f"highest emergency probability ({w.emergency_probability:.3f}),"
        if n > 1
        else f"the recording ({w.end_s:.1f} s, one window)"
    )
    if w.decided_by == "gate":
        parts = [f"The binary audio gate judged every window regular; {where} decides: regular."]
    elif w.decided_by == "fusion":
        parts = [f"Audio and text fused: {where} decides: {w.label}."]
    else:
        parts = [f"Audio only: {where} decides: {w.label}."]
    if text.status == "skipped" and text.detail:
        parts.append(f"Text model skipped: {text.detail}.")
    if gate == "none":
        parts.append("The gate is off: every model ran on every window.")
    if dropped_tail_s > 0:
        parts.append(
            f"The last {dropped_tail_s:.2f} s (shorter than the minimum window) was not scored."
        )
    return " ".join(parts)
