"""The engine on any recipe: windows, the feature graph, the models, the decision.

Per window: the graph's nodes that feed the models (alertfusion.recipe.graph), the gate model
first when the recipe has a gate (where its top label is the gate's label, the window stops
there and takes that label), then the fused models, each output turned into probabilities by
its kind (softmax of logits, probabilities as they are, a sigmoid p as [1 - p, p]), fused by
the recipe's method. A transcript model runs once per recording, when some window passed the
gate (with `text_overrides_gate` before the gate decides). The windows are then aggregated
(`aggregate_windows`). Models run one after the other on the calling thread; today's system
keeps its own optimised, concurrent path (alertfusion.engine.core).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from alertfusion.errors import AlertFusionError, ReasonCode
from alertfusion.result import ClassificationResult, Timings, TranscriptInfo

if TYPE_CHECKING:
    import numpy as np

    from alertfusion.audio import DecodedAudio
    from alertfusion.engine.core import Engine, Gate
    from alertfusion.recipe.schema import ModelSpec, Recipe


def probabilities(spec: ModelSpec, row: np.ndarray) -> np.ndarray:
    """One output row as probabilities over the model's labels (float64)."""
    import numpy as np

    from alertfusion.fusion import softmax

    if spec.output.kind == "logits":
        return softmax(row)
    if spec.output.kind == "sigmoid":
        p = float(row[0])
        return np.array([1.0 - p, p])
    return np.asarray(row, dtype=np.float64)


def fuse(recipe: Recipe, outputs: dict[str, np.ndarray]) -> np.ndarray:
    """The fused probabilities of one window from the fused models that have an output."""
    import numpy as np

    from alertfusion.fusion import l2_normalised, softmax

    method = recipe.decision.fusion.method
    present = [m for m in recipe.decision.fusion.models if m in outputs]
    if method == "l2norm_softmax":
        if len(present) == 1:
            return softmax(outputs[present[0]])
        return softmax(np.sum([l2_normalised(outputs[m]) for m in present], axis=0))
    rows = [probabilities(recipe.models[m], outputs[m]) for m in present]
    return np.mean(rows, axis=0) if method == "mean" else rows[0]


@dataclass
class Window:
    index: int
    start_s: float
    end_s: float
    #: each model's output row (raw)
    outputs: dict[str, np.ndarray]
    stopped: bool
    #: the fused probabilities (a stopped window: all on the gate's label)
    probabilities: np.ndarray | None = None


def _run_model(engine: Engine, name: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import numpy as np

    spec = engine.spec.recipe.models[name]
    out = engine.sessions.run(name, feeds)
    width = spec.output_width
    if out.shape != (1, width) or not np.isfinite(out).all():
        raise AlertFusionError(
            f"the {name} model returned output of shape {tuple(out.shape)} (finite: "
            f"{bool(np.isfinite(out).all())}), expected (1, {width})",
            code=ReasonCode.INTERNAL,
        )
    return np.asarray(out[0], dtype=np.float64)


def _feeds(spec: ModelSpec, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import numpy as np

    from alertfusion.recipe.graph import layout

    return {
        name: np.ascontiguousarray(layout(values[feed.node], feed.layout)[np.newaxis], np.float32)
        for name, feed in spec.inputs.items()
    }


def classify_recipe(
    engine: Engine,
    audio: bytes | bytearray | memoryview | str | os.PathLike[str] | DecodedAudio,
    filename: str | None,
    transcript: str | None,
    no_text_detail: str | None,
    gate: Gate,
    text_source: Literal["client", "aws_transcribe"] = "client",
) -> ClassificationResult:
    from alertfusion.recipe.graph import plan_windows, window_samples

    started = time.perf_counter()
    recipe = engine.spec.recipe
    decision = recipe.decision
    t = time.perf_counter()
    decoded = engine._decode(audio, filename)
    decode_ms = _ms(t)
    info = None
    if transcript is not None:
        info = TranscriptInfo(source=text_source, text=transcript)
    elif recipe.transcriber is not None:
        # no text from the client: the bundle's own speech-to-text model, on the whole clip
        heard = engine.transcriber().transcribe(decoded.samples)
        info = TranscriptInfo(
            source="model", text=heard.text, model=heard.model, n_tokens=heard.n_tokens,
            ms=round(heard.ms, 3),
        )  # fmt: skip
        if heard.text:
            transcript, no_text_detail = heard.text, None
        else:
            no_text_detail = "the speech-to-text model heard no words"
    sr = recipe.sample_rate
    plan = plan_windows(len(decoded.samples), recipe.windows, sr)
    graph = engine.feature_graph()
    feature_models = [
        n for n, m in recipe.models.items() if m.source == "features" and m.task == "classify"
    ]
    text_models = [n for n in decision.fusion.models if recipe.models[n].source == "transcript"]
    gate_model = decision.gate.model if decision.gate is not None else None
    wanted = {f.node for n in feature_models for f in recipe.models[n].inputs.values()}
    text_out: dict[str, np.ndarray] = {}
    encoded = None
    text_ms = 0.0
    if transcript is not None and text_models and decision.text_overrides_gate:
        encoded, text_out, text_ms = _run_texts(engine, transcript, text_models)
    features_ms = models_ms = 0.0
    windows: list[Window] = []
    for index, span in enumerate(plan.spans):
        t = time.perf_counter()
        values = graph.run(window_samples(decoded.samples, span, plan.pad_to), wanted)
        features_ms += _ms(t)
        t = time.perf_counter()
        outputs: dict[str, np.ndarray] = {}
        stopped = False
        if gate_model is not None and decision.gate is not None:
            spec = recipe.models[gate_model]
            outputs[gate_model] = _run_model(engine, gate_model, _feeds(spec, values))
            top = spec.label_names[int(probabilities(spec, outputs[gate_model]).argmax())]
            stopped = (
                gate == "binary"
                and top == decision.gate.label
                and not _text_alert(recipe, text_out)
            )
        if not stopped:
            for name in decision.fusion.models:
                if name in feature_models:
                    spec = recipe.models[name]
                    outputs[name] = _run_model(engine, name, _feeds(spec, values))
        models_ms += _ms(t)
        windows.append(Window(index, span[0] / sr, span[1] / sr, outputs, stopped))
    passed = any(not w.stopped for w in windows)
    skipped: str | None = None
    if not text_models:
        skipped = "NO_TEXT_MODEL"
    elif transcript is None:
        skipped = "NO_TEXT"
    elif not passed:
        skipped = "GATE_REGULAR"
    elif not text_out:
        encoded, text_out, text_ms = _run_texts(engine, transcript, text_models)
        if encoded is None:
            skipped, no_text_detail = "NO_TEXT", "the transcript has no words"
    t = time.perf_counter()
    for w in windows:
        w.probabilities = _window_probabilities(recipe, w, text_out)
    from alertfusion.engine.aggregate import build_recipe_result

    result = build_recipe_result(
        engine,
        windows,
        text_out=text_out,
        encoded=encoded,
        skipped=skipped,
        no_text_detail=no_text_detail,
        gate=gate,
        duration_s=decoded.duration_s,
        dropped_tail_s=plan.dropped_tail_s,
    )
    fusion_ms = _ms(t)
    return result.model_copy(
        update={
            "transcript": info,
            "timings": Timings(
                decode_ms=decode_ms,
                features_ms=features_ms,
                audio_models_ms=models_ms,
                text_model_ms=text_ms,
                fusion_ms=fusion_ms,
                total_ms=_ms(started),
            ),
        }
    )


def _run_texts(
    engine: Engine, transcript: str, names: list[str]
) -> tuple[object, dict[str, np.ndarray], float]:
    """Each transcript model on the transcript: (tokens or None, outputs, ms)."""
    out: dict[str, np.ndarray] = {}
    encoded = None
    ms = 0.0
    for name in names:
        encoded, logits, spent = engine._run_text(transcript, None, name)
        ms += spent
        if logits is not None:
            out[name] = logits.astype("float64")
    return encoded, out, ms


def _text_alert(recipe: Recipe, text_out: dict[str, np.ndarray]) -> bool:
    """decision.text_overrides_gate: a transcript model's top label is an alert label."""
    if not recipe.decision.text_overrides_gate:
        return False
    for name, row in text_out.items():
        if recipe.models[name].label_names[int(row.argmax())] in recipe.decision.alert_labels:
            return True
    return False


def _window_probabilities(recipe: Recipe, w: Window, text_out: dict[str, np.ndarray]) -> np.ndarray:
    import numpy as np

    labels = [label.name for label in recipe.labels]
    if w.stopped:
        assert recipe.decision.gate is not None
        out = np.zeros(len(labels))
        out[labels.index(recipe.decision.gate.label)] = 1.0
        return out
    return fuse(recipe, {**w.outputs, **text_out})


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1e3
