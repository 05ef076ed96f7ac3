"""`python -m alertfusion features FILE --bundle DIR --out X.npz`: what the models saw.

Every feature node's output for every window of a recording, keyed by node name with the
window axis first, to compare with what a model was trained on (a train/serve skew shows as a
difference here). Nodes whose shape changes from window to window (a shorter last window that
is scored as it is) are padded with NaN to the largest window's shape, and their true shape per
window is stored as ``NAME:shape``; ``:windows`` holds each window's start and end in seconds.
Nodes downstream of a scaler whose fitted values the recipe does not carry (a recipe file, not
a bundle) are left out, and listed in ``:skipped``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alertfusion.recipe import schema as s

if TYPE_CHECKING:
    import numpy as np

WINDOWS_KEY = ":windows"
SKIPPED_KEY = ":skipped"
SHAPE_SUFFIX = ":shape"


def unfilled(recipe: s.Recipe) -> set[str]:
    """Nodes that depend on an affine node without its fitted values."""
    from alertfusion.recipe.graph import topological_order

    out: set[str] = set()
    for name in topological_order(recipe.features):
        node = recipe.features[name]
        missing = isinstance(node, s.Affine) and (node.mean is None or node.scale is None)
        if missing or any(src in out for src in node.sources()):
            out.add(name)
    return out


def extract_features(
    recipe: s.Recipe, samples: np.ndarray, nodes: list[str] | None = None
) -> dict[str, np.ndarray]:
    """The arrays described in the module docstring, for decoded samples at the recipe's
    rate (every node, or `nodes`)."""
    import numpy as np

    from alertfusion.recipe.graph import FeatureGraph, plan_windows, window_samples

    skipped = unfilled(recipe)
    wanted = [n for n in (nodes or recipe.features) if n not in skipped]
    plan = plan_windows(len(samples), recipe.windows, recipe.sample_rate)
    graph = FeatureGraph(recipe)
    per_window: dict[str, list[np.ndarray]] = {n: [] for n in wanted}
    for span in plan.spans:
        values = graph.run(window_samples(samples, span, plan.pad_to), wanted)
        for name in wanted:
            per_window[name].append(np.asarray(values[name]))
    out: dict[str, np.ndarray] = {}
    for name, arrays in per_window.items():
        shapes = {a.shape for a in arrays}
        if len(shapes) == 1:
            out[name] = np.stack(arrays)
            continue
        largest = tuple(max(dims) for dims in zip(*shapes, strict=True))
        dtype = np.result_type(*arrays, np.float32)
        padded = np.full((len(arrays), *largest), np.nan, dtype=dtype)
        for i, a in enumerate(arrays):
            index: tuple[int | slice, ...] = (i, *(slice(0, d) for d in a.shape))
            padded[index] = a
        out[name] = padded
        out[name + SHAPE_SUFFIX] = np.array([a.shape for a in arrays], dtype=np.int64)
    sr = recipe.sample_rate
    out[WINDOWS_KEY] = np.array([(a / sr, b / sr) for a, b in plan.spans], dtype=np.float64)
    out[SKIPPED_KEY] = np.array(sorted(skipped & set(nodes or recipe.features)), dtype=str)
    return out
