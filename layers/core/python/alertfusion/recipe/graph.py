"""The feature graph of a recipe: its structure checked, its shapes found on a probe signal, its
nodes computed per window, the windows cut, the models' input tensors laid out.

Shapes are found by running the graph (alertfusion.recipe.ops) on a deterministic probe signal
at the window lengths the recipe can produce: the full window and the shortest one its tail
policy keeps (`probe_lengths`). A dimension that has the same size at every length is fixed; one
that differs varies with the window, and a model input that needs it fixed is refused. The
probe also finds a window too short for a node (a delta wider than the frames, an STFT longer
than the window) before any recording does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from alertfusion import limits
from alertfusion.errors import AlertFusionError, AudioError, BundleError, ReasonCode
from alertfusion.recipe import schema as s

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    import numpy as np

#: a dimension: its size, or None where it varies with the window's length
Shape = tuple[int | None, ...]


def _fail(message: str) -> BundleError:
    return BundleError(message, code=ReasonCode.BUNDLE_INVALID)


# ------------------------------------------------------------------------------ structure


def topological_order(features: Mapping[str, s.Node]) -> list[str]:
    """Every node after the nodes it reads; ValueError naming a missing source or a cycle."""
    for name, node in features.items():
        for source in node.sources():
            if source not in features:
                raise ValueError(f"features.{name}: no node named {source!r}")
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = path[path.index(name) :] + [name]
            raise ValueError(f"features: a cycle {' -> '.join(cycle)}")
        state[name] = 1
        for source in features[name].sources():
            visit(source, [*path, name])
        state[name] = 2
        order.append(name)

    for name in features:
        visit(name, [])
    return order


def node_rates(recipe: s.Recipe) -> dict[str, int]:
    """Each node's sample rate: the recipe's, or the last resample's on its path."""
    rates: dict[str, int] = {}
    for name in topological_order(recipe.features):
        node = recipe.features[name]
        if isinstance(node, s.Resample):
            rates[name] = node.rate
        else:
            found = {rates[x] for x in node.sources()}
            rates[name] = found.pop() if len(found) == 1 else recipe.sample_rate
    return rates


def check_structure(recipe: s.Recipe) -> None:
    """What can be checked without numbers; ValueError naming the field (pydantic reports it
    as a validation error of the recipe)."""
    features = recipe.features
    topological_order(features)
    if not any(isinstance(n, s.Waveform) for n in features.values()):
        raise ValueError("features: no waveform node (the window's samples)")
    nyquist = recipe.sample_rate / 2
    rates = node_rates(recipe)
    for name, node in features.items():
        if isinstance(node, s.Resample) and not isinstance(features[node.input], s.Waveform):
            raise ValueError(f"features.{name}.input: a resample node reads the waveform")
        if isinstance(node, s.Yin | s.Tempo) and rates[name] != recipe.sample_rate:
            raise ValueError(
                f"features.{name}: a {node.op} node after a resample is not supported (it "
                f"would read the rate {recipe.sample_rate}, its input has {rates[name]})"
            )
        if isinstance(node, s.Mel):
            if not isinstance(features[node.input], s.Stft):
                raise ValueError(f"features.{name}.input: a mel node reads an stft node")
            top = rates[name] / 2
            fmax = node.fmax if node.fmax is not None else top
            if not 0 <= node.fmin < fmax <= top:
                raise ValueError(f"features.{name}: need 0 <= fmin < fmax <= {top:g}")
        if isinstance(node, s.Yin) and node.fmax > nyquist:
            raise ValueError(f"features.{name}.fmax: above {nyquist:g} Hz")
    for model, spec in recipe.models.items():
        for input_name, feed in spec.inputs.items():
            if feed.node not in features:
                raise ValueError(f"models.{model}.inputs.{input_name}.node: no node {feed.node!r}")
    _check_decision(recipe)


def _check_decision(recipe: s.Recipe) -> None:
    d = recipe.decision
    models = recipe.models
    used: list[str] = []
    for name in d.fusion.models:
        if name not in models:
            raise ValueError(f"decision.fusion.models: no model {name!r}")
        if models[name].task != "classify":
            raise ValueError(f"decision.fusion.models: {name} transcribes, it does not classify")
        used.append(name)
    if len(set(used)) != len(used):
        raise ValueError("decision.fusion.models: a model is named twice")
    first = models[used[0]].label_names
    for name in used[1:]:
        if models[name].label_names != first:
            raise ValueError(
                f"decision.fusion.models: {name}'s labels {models[name].label_names} are not "
                f"{used[0]}'s {first} (fused models share one label list, in one order)"
            )
    if d.fusion.method == "single" and len(used) != 1:
        raise ValueError("decision.fusion: method 'single' takes exactly one model")
    if d.fusion.method == "l2norm_softmax":
        for name in used:
            if models[name].output.kind != "logits":
                raise ValueError(
                    f"decision.fusion: l2norm_softmax needs logits; {name} has "
                    f"{models[name].output.kind}"
                )
    if all(models[n].source == "transcript" for n in used):
        raise ValueError("decision.fusion.models: at least one model must read the audio")
    if d.gate is not None:
        gate = models.get(d.gate.model)
        if gate is None:
            raise ValueError(f"decision.gate.model: no model {d.gate.model!r}")
        if gate.source != "features" or gate.task != "classify":
            raise ValueError("decision.gate.model: the gate classifies the audio's features")
        if d.gate.model in used:
            raise ValueError("decision.gate.model: the gate is not also fused")
        if d.gate.label not in gate.label_names:
            raise ValueError(
                f"decision.gate.label: {d.gate.label!r} is not a label of {d.gate.model} "
                f"({gate.label_names})"
            )
        if d.gate.label not in first:
            raise ValueError(
                f"decision.gate.label: {d.gate.label!r} must also be a label of the verdict "
                f"{first} (a window the gate stops takes it)"
            )
        used.append(d.gate.model)
    transcriber = recipe.transcriber
    if transcriber is not None:
        if transcriber not in models:
            raise ValueError(f"transcript_source: no model {transcriber!r}")
        if models[transcriber].task != "transcribe":
            raise ValueError(f"transcript_source: {transcriber} is not a transcribe model")
        used.append(transcriber)
    unused = sorted(set(models) - set(used))
    if unused:
        raise ValueError(f"models: {', '.join(unused)} not used by the decision")
    unknown = sorted(set(d.alert_labels) - set(first))
    if unknown:
        raise ValueError(f"decision.alert_labels: {unknown} are not labels of the verdict {first}")
    if d.text_overrides_gate and (
        d.gate is None
        or not d.alert_labels
        or not any(models[n].source == "transcript" for n in d.fusion.models)
    ):
        raise ValueError(
            "decision.text_overrides_gate needs a gate, alert labels and a transcript model "
            "in the fusion"
        )
    if (d.aggregate == "whole") != (recipe.windows.mode == "whole"):
        raise ValueError("decision.aggregate 'whole' goes with windows.mode 'whole' (only)")
    if d.aggregate == "max_alert" and not d.alert_labels:
        raise ValueError("decision.aggregate 'max_alert' needs alert_labels")


# -------------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class WindowPlan:
    """The windows of one recording: sample spans, the length every window is padded to (tail
    policy "pad"), and the seconds of a dropped tail."""

    spans: list[tuple[int, int]]
    pad_to: int | None
    dropped_tail_s: float


def window_length(windows: s.Windows, sample_rate: int) -> int | None:
    return None if windows.seconds is None else round(windows.seconds * sample_rate)


def plan_windows(n: int, windows: s.Windows, sample_rate: int) -> WindowPlan:
    if n <= 0:
        raise AudioError("no samples to classify", code=ReasonCode.EMPTY_AUDIO)
    size = window_length(windows, sample_rate)
    if size is None:
        return WindowPlan([(0, n)], None, 0.0)
    hop = size if windows.hop_seconds is None else max(1, round(windows.hop_seconds * sample_rate))
    spans = []
    start = 0
    while True:
        spans.append((start, min(start + size, n)))
        if start + size >= n:
            break
        start += hop
    dropped = 0.0
    tail = spans[-1][1] - spans[-1][0]
    if len(spans) > 1 and tail < size and tail < windows.min_tail_seconds * sample_rate:
        spans.pop()
        dropped = (n - spans[-1][1]) / sample_rate
    return WindowPlan(spans, size if windows.tail == "pad" else None, dropped)


def window_samples(samples: np.ndarray, span: tuple[int, int], pad_to: int | None) -> np.ndarray:
    import numpy as np

    window = samples[span[0] : span[1]]
    if pad_to is None or len(window) >= pad_to:
        return window
    out = np.zeros(pad_to, dtype=np.float32)
    out[: len(window)] = window
    return out


def probe_lengths(recipe: s.Recipe) -> list[int]:
    """Window lengths (samples) the recipe can feed its graph: the full window and the
    shortest its tail policy keeps (a recording shorter than one window is one window, at
    least MIN_AUDIO_SECONDS long), and one between."""
    sr = recipe.sample_rate
    windows = recipe.windows
    shortest = round(limits.MIN_AUDIO_SECONDS * sr)
    size = window_length(windows, sr)
    if size is None:
        return [shortest, round(1.37 * shortest), 2 * shortest + 1]
    if windows.tail == "pad":
        return [size]
    low = max(1, min(size, shortest, round(windows.min_tail_seconds * sr) or 1))
    return sorted({low, (low + size) // 2, size})


# -------------------------------------------------------------------------------- running


class FeatureGraph:
    """A recipe's feature graph, ready to compute windows (thread-safe: no state per run)."""

    def __init__(self, recipe: s.Recipe) -> None:
        self.recipe = recipe
        self.order = topological_order(recipe.features)
        self.rates = node_rates(recipe)
        self._needs: dict[frozenset[str], list[str]] = {}

    def needed(self, wanted: Iterable[str] | None) -> list[str]:
        """The nodes to compute for `wanted` (None: all), in order."""
        if wanted is None:
            return self.order
        key = frozenset(wanted)
        found = self._needs.get(key)
        if found is None:
            todo = set(key)
            keep: set[str] = set()
            while todo:
                name = todo.pop()
                if name not in keep:
                    keep.add(name)
                    todo.update(self.recipe.features[name].sources())
            found = [n for n in self.order if n in keep]
            self._needs[key] = found
        return found

    def run(self, window: np.ndarray, wanted: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Every node needed for `wanted` (None: all) on one window's float32 samples.

        Raises AudioError (TOO_SHORT and the like) for a window a node cannot use; anything
        else a node raises is a defect of the recipe, reported as BUNDLE_INVALID naming it."""
        import numpy as np

        from alertfusion.recipe.ops import Context, apply

        ctx = Context(self.recipe.sample_rate, self.recipe.features, rates=self.rates)
        values: dict[str, np.ndarray] = {}
        for name in self.needed(wanted):
            node = self.recipe.features[name]
            if isinstance(node, s.Waveform):
                values[name] = window
                continue
            try:
                values[name] = apply(node, [values[x] for x in node.sources()], ctx)
            except AlertFusionError:
                raise
            except (ValueError, IndexError, TypeError) as exc:
                raise _fail(f"features.{name} ({node.op}): {exc}") from exc
            if not np.isfinite(values[name]).all():
                raise AudioError(
                    f"features.{name} ({node.op}) is not finite on this window",
                    code=ReasonCode.NOT_FINITE,
                )
        return values


def layout(array: np.ndarray, kind: str) -> np.ndarray:
    """A node's per-window array as one model input row (no batch axis): see ModelInput."""
    nd = array.ndim
    if kind == "flat":
        return array.reshape(-1)
    wanted = {"NCHW": (2, 3), "NHWC": (2, 3), "NCW": (1, 2)}[kind]
    if nd not in wanted:
        raise ValueError(
            f"layout {kind} takes a {' or '.join(f'{w}-D' for w in wanted)} node, not {nd}-D"
        )
    if nd == wanted[1]:
        return array
    return array[..., None] if kind == "NHWC" else array[None]


def _layout_shape(shape: Shape, kind: str) -> Shape:
    if kind == "flat":
        total = 1
        for d in shape:
            if d is None:
                return (None,)
            total *= d
        return (total,)
    wanted = {"NCHW": (2, 3), "NHWC": (2, 3), "NCW": (1, 2)}[kind]
    if len(shape) not in wanted:
        raise ValueError(
            f"layout {kind} takes a {' or '.join(f'{w}-D' for w in wanted)} node, "
            f"not {len(shape)}-D {shape}"
        )
    if len(shape) == wanted[1]:
        return shape
    return (*shape, 1) if kind == "NHWC" else (1, *shape)


def probe_signal(n: int) -> np.ndarray:
    import numpy as np

    rng = np.random.default_rng(0)
    t = np.arange(n) / 16_000.0
    y = 0.1 * rng.standard_normal(n) + 0.3 * np.sin(2 * np.pi * 220.0 * t)
    return y.astype(np.float32)


def check_shapes(
    recipe: s.Recipe, input_shapes: Mapping[str, Mapping[str, list[int | None]]] | None = None
) -> dict[str, Shape]:
    """Run the graph on the probe at every length of `probe_lengths`: each node's shape (None
    where it varies), and each model input checked against its layout and, when given, the
    model file's input shapes (batch axis first). BUNDLE_INVALID naming the node or input."""
    graph = FeatureGraph(recipe)
    seen: dict[str, list[tuple[int, ...]]] = {}
    for n in probe_lengths(recipe):
        try:
            values = graph.run(probe_signal(n))
        except AudioError as exc:
            raise _fail(
                f"recipe {recipe.name}: a window of {n} samples ({n / recipe.sample_rate:.3f} s, "
                f"the shortest its windows give) fails: {exc.message}"
            ) from exc
        for name, value in values.items():
            seen.setdefault(name, []).append(tuple(value.shape))
    shapes: dict[str, Shape] = {}
    for name, found in seen.items():
        ranks = {len(f) for f in found}
        if len(ranks) != 1:
            raise _fail(f"features.{name}: its rank changes with the window length: {found}")
        shapes[name] = tuple(
            dims[0] if len(set(dims)) == 1 else None for dims in zip(*found, strict=True)
        )
    for model, spec in recipe.models.items():
        files = (input_shapes or {}).get(model)
        for input_name, feed in spec.inputs.items():
            where = f"models.{model}.inputs.{input_name}"
            try:
                tensor = _layout_shape(shapes[feed.node], feed.layout)
            except ValueError as exc:
                raise _fail(f"{where} (node {feed.node}): {exc}") from exc
            if files is None:
                continue
            declared = files.get(input_name)
            if declared is None:
                raise _fail(f"{where}: the model file has no input {input_name!r}")
            _compare(where, feed.node, tensor, declared[1:])
    return shapes


def _compare(where: str, node: str, tensor: Shape, declared: list[int | None]) -> None:
    if len(declared) != len(tensor):
        raise _fail(
            f"{where}: node {node} gives a {len(tensor)}-D row {tensor}, the model takes "
            f"{len(declared)}-D rows {tuple(declared)}"
        )
    for axis, (have, want) in enumerate(zip(tensor, declared, strict=True)):
        if want is None:
            continue
        if have is None:
            raise _fail(
                f"{where}: node {node}'s axis {axis} varies with the window length, the model "
                f"needs {want} (fix it with a frames, resize or pad step)"
            )
        if have != want:
            raise _fail(
                f"{where}: node {node} gives shape {tensor}, the model takes "
                f"{tuple(declared)} (axis {axis}: {have} != {want})"
            )
