"""Small manifest v2 bundles for any recipe, without PyTorch: each model an ONNX graph made with
onnx.helper (the mean and max of each input, a seeded linear map, then the recipe's output
kind), the recipe's unfitted scalers set to an identity, a golden set from probe windows. They
exercise the engine's recipe path, the loader's checks and the self-check in the unit tier."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from alertfusion.bundle_files import sha256_file
from alertfusion.manifest import GoldenSet
from alertfusion.manifest_v2 import ManifestV2, ModelFile
from alertfusion.recipe import schema as s
from alertfusion.recipe.graph import FeatureGraph, layout, probe_signal
from tests.conftest import REPO

RECIPES = REPO / "recipes"
#: the shipped recipes the engine runs on its generic path
GENERIC_RECIPES = ("infant-cry", "dog-bark", "speech-emotion", "speaker-gender")


def recipe_dict(name: str) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads((RECIPES / f"{name}.json").read_text(encoding="utf-8"))
    return raw


def identity_scalers(raw: dict[str, Any]) -> dict[str, Any]:
    """The recipe with every unfitted affine node set to mean 0, scale 1."""
    for node in raw["features"].values():
        if node["op"] == "affine":
            node["mean"] = 0.0 if node.get("mean") is None else node["mean"]
            node["scale"] = 1.0 if node.get("scale") is None else node["scale"]
    return raw


def _model(spec: s.ModelSpec, rows: dict[str, tuple[int, ...]], seed: int) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes = []
    inits = []
    pooled = []
    inputs = []
    for name, shape in rows.items():
        inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", *shape]))
        axes = list(range(1, len(shape) + 1))
        for op in ("ReduceMean", "ReduceMax"):
            out = f"{name}_{op}"
            nodes.append(helper.make_node(op, [name], [out], axes=axes, keepdims=0))
            nodes.append(helper.make_node("Unsqueeze", [out, "one_axis"], [f"{out}_2d"]))
            pooled.append(f"{out}_2d")
    inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "one_axis"))
    nodes.append(helper.make_node("Concat", pooled, ["pooled"], axis=1))
    width = spec.output_width
    weight = rng.standard_normal((len(pooled), width)).astype(np.float32) * 3.0
    bias = rng.standard_normal(width).astype(np.float32)
    inits += [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")]
    nodes.append(helper.make_node("Gemm", ["pooled", "w", "b"], ["raw"]))
    kind = spec.output.kind
    last = {"logits": "Identity", "probabilities": "Softmax", "sigmoid": "Sigmoid"}[kind]
    if last == "Softmax":
        nodes.append(helper.make_node(last, ["raw"], [spec.output.name], axis=-1))
    else:
        nodes.append(helper.make_node(last, ["raw"], [spec.output.name]))
    output = helper.make_tensor_value_info(spec.output.name, TensorProto.FLOAT, ["batch", width])
    graph = helper.make_graph(nodes, "recipe_test_model", inputs, [output], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def probe_rows(recipe: s.Recipe, lengths: tuple[float, ...] = (1.0, 0.7, 1.3)) -> dict:
    """Each features model's inputs on probe windows (scaled lengths of a full window)."""
    from alertfusion.recipe.graph import plan_windows, window_samples

    graph = FeatureGraph(recipe)
    sr = recipe.sample_rate
    full = round((recipe.windows.seconds or 2.0) * sr)
    out: dict[str, dict[str, list[np.ndarray]]] = {}
    for k, scale in enumerate(lengths):
        samples = probe_signal(round(full * scale)) * (0.5 + k)
        plan = plan_windows(len(samples), recipe.windows, sr)
        window = window_samples(samples, plan.spans[0], plan.pad_to)
        values = graph.run(window)
        for name, spec in recipe.models.items():
            for input_name, feed in spec.inputs.items():
                row = layout(values[feed.node], feed.layout)
                out.setdefault(name, {}).setdefault(input_name, []).append(row)
    return {m: {i: np.stack(v).astype(np.float32) for i, v in d.items()} for m, d in out.items()}


def write_bundle(raw: dict[str, Any], directory: Path, *, seed: int = 0) -> Path:
    """A v2 bundle of the recipe `raw` (a recipe file's JSON) in `directory`."""
    import onnxruntime as ort

    directory.mkdir(parents=True, exist_ok=True)
    recipe = s.Recipe.model_validate(raw)
    rows = probe_rows(recipe)
    models = {}
    golden: dict[str, np.ndarray] = {}
    for k, (name, spec) in enumerate(recipe.models.items()):
        shapes = {i: tuple(v.shape[1:]) for i, v in rows[name].items()}
        path = directory / f"{name}.onnx"
        onnx.save(_model(spec, shapes, seed + k), str(path))
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        out = session.run([spec.output.name], rows[name])[0]
        golden.update({f"{name}/{i}": v for i, v in rows[name].items()})
        golden[f"{name}/fp32"] = out.astype(np.float64)
        models[name] = ModelFile(
            file=path.name,
            sha256=sha256_file(path),
            input_names=list(spec.inputs),
            output_names=[spec.output.name],
            labels=spec.label_names,
            size_bytes=path.stat().st_size,
            input_shapes={i: [None, *shape] for i, shape in shapes.items()},
            output_shape=[None, spec.output_width],
        )
    golden_path = directory / "golden.npz"
    with golden_path.open("wb") as f:
        np.savez(f, **golden)  # type: ignore[arg-type]  # numpy's stub: **arrays
    manifest = ManifestV2(
        bundle_version=f"test-{recipe.name}",
        created_at=datetime.now(UTC),
        trained=False,
        description="test bundle (onnx.helper models)",
        recipe=recipe,
        models=models,
        golden=GoldenSet(
            file=golden_path.name,
            sha256=sha256_file(golden_path),
            size_bytes=golden_path.stat().st_size,
            inputs={name: len(golden[f"{name}/fp32"]) for name in models},
        ),
    )
    manifest.dump(directory / "manifest.json")
    return directory
