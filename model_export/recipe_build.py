"""Manifest v2 bundles from a recipe: `python -m model_export demo --recipe` (PyTorch
re-implementations with seeded weights, marked untrained) and `bundle --recipe --onnx`
(models exported elsewhere, each checked against the reference outputs of a parity file).

Either way: the recipe is read and checked, its fitted scalers filled (the demo fits them on the
calibration audio; `bundle` takes them from `--scaler NODE=FILE.npz`), every model checked
against its reference (PyTorch, or the parity file) with an explicit tolerance, int8 judged by
the margin rule (alertfusion.agreement) when asked for, a golden set written for the serving
CPU's self-check, and the bundle verified through the runtime's own loader, sessions and
self-check before it is published (atomically, as `bundle` does for v1).
"""

from __future__ import annotations

import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import onnx

from alertfusion.bundle_files import sha256_file
from alertfusion.errors import AlertFusionError, BundleError
from alertfusion.manifest import MANIFEST_FILE, BundleFile, GoldenSet, QuantizationReport
from alertfusion.manifest_v2 import ManifestV2, ModelFile
from alertfusion.recipe import schema as s
from model_export.errors import ExportError, ExportReason
from model_export.outputs import check_output, output_lock, publish
from model_export.progress import Progress

GOLDEN_FILE = "golden.npz"
#: golden rows per model (the serving CPU runs them at every cold start)
GOLDEN_ROWS = 8
#: calibration windows kept at most (evenly spaced)
MAX_ROWS = 96
#: ONNX Runtime fp32 against the reference outputs, max |difference|
PARITY_TOLERANCE = 1e-4
RECIPE_QUANT_CONFIG = "QDQ static int8: quantize_static, U8S8 (7-bit weights), per-channel, MinMax"


def load_recipe(path: Path) -> s.Recipe:
    try:
        return s.Recipe.load(Path(path))
    except BundleError as exc:
        raise ExportError(ExportReason.BUNDLE_INVALID, exc.message) from exc


# ------------------------------------------------------------------------- calibration


def calibration_windows(recipe: s.Recipe, directory: Path) -> list[np.ndarray]:
    """Windows of every recording in `directory` as the runtime cuts them (decoded at the
    recipe's rate), more of them from passes shifted by a quarter window (fixed windows) or
    crops (a whole-clip recipe); at most MAX_ROWS, evenly spaced."""
    from alertfusion.audio import decode_audio
    from alertfusion.recipe.graph import plan_windows, window_samples
    from model_export.calibration import audio_files

    out: list[np.ndarray] = []
    sr = recipe.sample_rate
    for path in audio_files(directory):
        try:
            y = decode_audio(path, sample_rate=sr).samples
        except AlertFusionError as exc:
            raise ExportError(
                ExportReason.CALIBRATION_INVALID, f"calibration audio {path}: {exc.message}"
            ) from exc
        if recipe.windows.mode == "whole":
            n = len(y)
            crops = [(0, n), (0, int(0.6 * n)), (int(0.4 * n), n), (int(0.2 * n), int(0.8 * n))]
            out.extend(y[a:b] for a, b in crops if b - a >= sr // 2)
            continue
        size = round((recipe.windows.seconds or 0) * sr)
        for shift in (0.0, 0.25, 0.5, 0.75):
            start = round(shift * size)
            if start and len(y) - start < sr:
                continue
            plan = plan_windows(len(y) - start, recipe.windows, sr)
            out.extend(window_samples(y[start:], span, plan.pad_to) for span in plan.spans)
    if len(out) > MAX_ROWS:
        keep = np.linspace(0, len(out) - 1, MAX_ROWS).round().astype(int)
        out = [out[i] for i in keep]
    return out


def node_values(recipe: s.Recipe, windows: list[np.ndarray], nodes: set[str]) -> dict[str, list]:
    from alertfusion.recipe.graph import FeatureGraph

    graph = FeatureGraph(recipe)
    found: dict[str, list[np.ndarray]] = {n: [] for n in nodes}
    for window in windows:
        values = graph.run(window, nodes)
        for n in nodes:
            found[n].append(values[n])
    return found


def fitted_scalers(recipe: s.Recipe, windows: list[np.ndarray]) -> dict[str, tuple[list, list]]:
    """A StandardScaler (mean_, scale_) per unfilled affine node, fitted like scikit-learn on
    its input stacked over the windows and reshaped to (-1, size of the affine's axis)."""
    todo = {
        name: node
        for name, node in recipe.features.items()
        if isinstance(node, s.Affine) and (node.mean is None or node.scale is None)
    }
    values = node_values(recipe, windows, {node.input for node in todo.values()})
    out = {}
    for name, node in todo.items():
        x = np.stack(values[node.input]).astype(np.float64)
        x = np.moveaxis(x, node.axis if node.axis < 0 else node.axis + 1, -1)
        x = x.reshape(-1, x.shape[-1])
        scale = x.std(axis=0)
        scale[scale < 10 * np.finfo(np.float64).eps] = 1.0  # sklearn's _handle_zeros_in_scale
        out[name] = (x.mean(axis=0).tolist(), scale.tolist())
    return out


def with_scalers(recipe: s.Recipe, scalers: dict[str, tuple[list, list]]) -> s.Recipe:
    """The recipe with those affine nodes' mean and scale filled (and checked again)."""
    missing = [
        n
        for n, node in recipe.features.items()
        if isinstance(node, s.Affine) and (node.mean is None or node.scale is None)
        if n not in scalers
    ]
    if missing:
        raise ExportError(
            ExportReason.BUNDLE_INVALID,
            f"recipe {recipe.name}: the fitted values of {', '.join(missing)} are missing "
            "(--scaler NODE=FILE.npz with arrays mean and scale)",
        )
    unknown = sorted(set(scalers) - set(recipe.features))
    if unknown:
        raise ExportError(ExportReason.BUNDLE_INVALID, f"--scaler names no node: {unknown}")
    features = dict(recipe.features)
    for name, (mean, scale) in scalers.items():
        node = features[name]
        if not isinstance(node, s.Affine):
            raise ExportError(ExportReason.BUNDLE_INVALID, f"--scaler {name}: not an affine node")
        features[name] = node.model_copy(update={"mean": mean, "scale": scale})
    raw = recipe.model_dump(mode="json")
    raw["features"] = {k: v.model_dump(mode="json") for k, v in features.items()}
    try:
        filled = s.Recipe.model_validate(raw)
        from alertfusion.recipe.graph import check_shapes

        check_shapes(filled)
    except (ValueError, BundleError) as exc:
        raise ExportError(ExportReason.BUNDLE_INVALID, f"recipe {recipe.name}: {exc}") from exc
    return filled


def model_rows(recipe: s.Recipe, windows: list[np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Each features model's input tensors over the windows, laid out as the runtime feeds
    them: {model: {input: (N, ...) float32}}."""
    from alertfusion.recipe.graph import layout

    specs = {n: m for n, m in recipe.models.items() if m.source == "features"}
    values = node_values(
        recipe, windows, {i.node for m in specs.values() for i in m.inputs.values()}
    )
    return {
        name: {
            input_name: np.ascontiguousarray(
                np.stack([layout(v, feed.layout) for v in values[feed.node]]), dtype=np.float32
            )
            for input_name, feed in spec.inputs.items()
        }
        for name, spec in specs.items()
    }


# ------------------------------------------------------------------------------- models


def run_onnx(path: Path, feeds: dict[str, np.ndarray], output: str, batch: int = 16) -> np.ndarray:
    from model_export.onnx_export import ort_session

    session = ort_session(path)
    n = len(next(iter(feeds.values())))
    parts = [
        session.run([output], {k: v[i : i + batch] for k, v in feeds.items()})[0]
        for i in range(0, n, batch)
    ]
    return np.concatenate(parts).astype(np.float64)


def onnx_shapes(path: Path, output: str) -> tuple[dict[str, list[int | None]], list[int | None]]:
    """The graph's input shapes and the named output's shape (None for a dynamic dimension)."""
    graph = onnx.load(str(path), load_external_data=False).graph

    def dims(value: onnx.ValueInfoProto) -> list[int | None]:
        shape = value.type.tensor_type.shape
        return [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]

    initializers = {i.name for i in graph.initializer}
    inputs = {v.name: dims(v) for v in graph.input if v.name not in initializers}
    outputs = {v.name: dims(v) for v in graph.output}
    if output not in outputs:
        raise ExportError(
            ExportReason.BUNDLE_INVALID,
            f"{path.name} has no output {output!r} (it has {sorted(outputs)})",
        )
    if graph.output and any(
        v.name == output and not v.type.HasField("tensor_type") for v in graph.output
    ):
        raise ExportError(ExportReason.BUNDLE_INVALID, f"{path.name}: {output} is not a tensor")
    return inputs, outputs[output]


def decision_rows(spec: s.ModelSpec, outputs: np.ndarray) -> np.ndarray:
    """Outputs as the rows a top-1 decision reads: a sigmoid p as [1 - p, p]."""
    if spec.output.kind == "sigmoid":
        return np.concatenate([1.0 - outputs, outputs], axis=1)
    return outputs


def check_parity(name: str, got: np.ndarray, want: np.ndarray, tolerance: float) -> float:
    if got.shape != want.shape:
        raise ExportError(
            ExportReason.PARITY_FAILED,
            f"{name}: ONNX gives outputs of shape {got.shape}, the reference {want.shape}",
        )
    worst = float(np.abs(got - want).max()) if got.size else 0.0
    if not np.isfinite(worst) or worst > tolerance:
        raise ExportError(
            ExportReason.PARITY_FAILED,
            f"{name}: ONNX outputs differ from the reference by up to {worst:.3g} on "
            f"{len(got)} inputs (tolerance {tolerance:g}); the model is refused",
        )
    return worst


def quantize_static_rows(
    name: str,
    fp32: Path,
    out: Path,
    rows: dict[str, np.ndarray],
    spec: s.ModelSpec,
    threshold: float,
) -> QuantizationReport:
    """Static QDQ int8 calibrated on `rows`; its agreement with fp32 on them by margins."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from model_export.onnx_export import quiet
    from model_export.quantize import agreement_report, enforce_threshold

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            n = len(next(iter(rows.values())))
            self._it = iter([{k: v[i : i + 8] for k, v in rows.items()} for i in range(0, n, 8)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    with quiet():
        quantize_static(
            str(fp32),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
            calibrate_method=CalibrationMethod.MinMax,
        )
    reference = decision_rows(spec, run_onnx(fp32, rows, spec.output.name))
    quantized = decision_rows(spec, run_onnx(out, rows, spec.output.name))
    report = agreement_report(reference, quantized, method="static_qdq", threshold=threshold)
    enforce_threshold(name, report)
    return report


@dataclass
class Built:
    """One model of the bundle: its file, the reference figures, its golden arrays."""

    file: Path
    parity: float
    source_sha256: str | None = None
    quantization: Literal["none", "int8_static_qdq"] = "none"
    report: QuantizationReport | None = None
    golden: dict[str, np.ndarray] = field(default_factory=dict)
    fallback: Path | None = None


def golden_pick(n: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(GOLDEN_ROWS, n)).round().astype(int))


def finish_model(
    name: str,
    spec: s.ModelSpec,
    fp32: Path,
    rows: dict[str, np.ndarray],
    parity: float,
    partial: Path,
    *,
    int8: bool,
    threshold: float,
    fp32_fallback: bool,
    progress: Progress,
    source_sha256: str | None = None,
) -> Built:
    """The model's final file in `partial` (int8 if asked, judged by margins) and its golden
    set: GOLDEN_ROWS of `rows` with fp32's outputs (and the build CPU's int8 outputs)."""
    pick = golden_pick(len(next(iter(rows.values()))))
    chosen = {k: np.ascontiguousarray(v[pick]) for k, v in rows.items()}
    golden = {f"{name}/{k}": v for k, v in chosen.items()}
    golden[f"{name}/fp32"] = run_onnx(fp32, chosen, spec.output.name)
    final = partial / f"{name}.onnx"
    if not int8:
        shutil.copyfile(fp32, final)
        return Built(final, parity, source_sha256, golden=golden)
    progress(f"{name}: static int8 (QDQ), calibrating on {len(pick)}+ rows")
    report = quantize_static_rows(name, fp32, final, rows, spec, threshold)
    golden[f"{name}/build"] = run_onnx(final, chosen, spec.output.name)
    fallback = None
    if fp32_fallback:
        fallback = partial / f"{name}.fp32.onnx"
        shutil.copyfile(fp32, fallback)
    return Built(final, parity, source_sha256, "int8_static_qdq", report, golden, fallback)


# ------------------------------------------------------------------------------- bundle


def _bundle_file(path: Path) -> BundleFile:
    return BundleFile(file=path.name, sha256=sha256_file(path), size_bytes=path.stat().st_size)


def write_manifest(
    recipe: s.Recipe,
    built: dict[str, Built],
    partial: Path,
    *,
    bundle_version: str,
    trained: bool,
    description: str,
    producer: dict[str, str],
) -> ManifestV2:
    arrays = {k: v for b in built.values() for k, v in b.golden.items()}
    golden_path = partial / GOLDEN_FILE
    with golden_path.open("wb") as f:
        np.savez_compressed(f, **arrays)  # type: ignore[arg-type]  # numpy's stub: **arrays
    golden = GoldenSet(
        **_bundle_file(golden_path).model_dump(),
        inputs={name: len(b.golden[f"{name}/fp32"]) for name, b in built.items()},
    )
    models = {}
    for name, b in built.items():
        spec = recipe.models[name]
        inputs, output = onnx_shapes(b.file, spec.output.name)
        models[name] = ModelFile(
            file=b.file.name,
            sha256=sha256_file(b.file),
            input_names=list(spec.inputs),
            output_names=[spec.output.name],
            labels=spec.label_names,
            quantization=b.quantization,
            quantization_report=b.report,
            parity_max_abs_diff=b.parity,
            source_checkpoint_sha256=b.source_sha256,
            size_bytes=b.file.stat().st_size,
            fp32_fallback=_bundle_file(b.fallback) if b.fallback is not None else None,
            input_shapes={k: inputs.get(k, []) for k in spec.inputs},
            output_shape=output,
        )
    try:
        manifest = ManifestV2(
            bundle_version=bundle_version,
            created_at=datetime.now(UTC),
            trained=trained,
            description=description,
            recipe=recipe,
            models=models,
            producer=producer,
            golden=golden,
        )
    except ValueError as exc:
        raise ExportError(ExportReason.BUNDLE_INVALID, f"manifest: {exc}") from exc
    manifest.dump(partial / MANIFEST_FILE)
    return manifest


def verify_v2(directory: Path) -> list[str]:
    """The bundle through the runtime: loader (sums, recipe, shapes on the probe), a session
    per model (its shapes against the manifest's), the golden set judged on this CPU."""
    from alertfusion.bundle import open_bundle
    from alertfusion.selfcheck import run_selfcheck
    from alertfusion.sessions import BundleSessions, SessionOptions

    try:
        bundle = open_bundle(Path(directory))
        sessions = BundleSessions(bundle, SessionOptions(intra_op_threads=0))
        sessions.create_all()
        steps = None
        if bundle.spec.recipe.transcriber is not None:
            from alertfusion.engine import Engine

            engine = Engine(bundle)
            engine.transcriber()  # the alphabet or tokenizer against the model
            steps = engine.whisper_step_logits
        check = run_selfcheck(bundle, sessions.run, steps=steps)
    except AlertFusionError as exc:
        raise ExportError(ExportReason.BUNDLE_INVALID, f"{directory}: {exc.message}") from exc
    if not check.passed:
        raise ExportError(
            ExportReason.BUNDLE_INVALID,
            f"{directory}: the golden set fails on this CPU: {'; '.join(check.lines()[1:])}",
        )
    return [
        f"sha256 of {len(bundle.spec.files())} files, recipe {bundle.spec.recipe.name} and its "
        "shapes",
        f"sessions of {', '.join(sessions.names)} (inputs and outputs as the manifest says)",
        f"golden set on this CPU ({check.ms:.0f} ms)",
    ]


def producer_notes(extra: dict[str, str]) -> dict[str, str]:
    import onnxruntime

    from model_export.onnx_export import OPSET

    out = {
        "tool": "model_export (python -m model_export)",
        "python": platform.python_version(),
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "opset": str(OPSET),
        "parity_tolerance": f"{PARITY_TOLERANCE:g}",
    }
    out.update(extra)
    return out


def assemble(
    out: Path,
    *,
    force: bool,
    progress: Progress,
    build: Callable[[Path, Path], ManifestV2],
) -> ManifestV2:
    """Run `build(partial, work)` in temporary directories next to `out`, verify what it
    wrote, publish it as `out` (nothing is left behind on failure)."""
    out = Path(out).absolute()
    started = time.perf_counter()
    with output_lock([out.parent], progress):
        check_output(out, force=force)
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.work-", dir=out.parent))
        published = False
        try:
            manifest = build(partial, work)
            progress("verify: the runtime's loader, sessions and self-check")
            for line in verify_v2(partial):
                progress(f"verify: {line}")
            check_output(out, force=force)
            partial.chmod(0o755)
            publish(partial, out)
            published = True
        finally:
            shutil.rmtree(work, ignore_errors=True)
            if not published:
                shutil.rmtree(partial, ignore_errors=True)
    progress(f"done: {out} ({time.perf_counter() - started:.1f} s)")
    return manifest
