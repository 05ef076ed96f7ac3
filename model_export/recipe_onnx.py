"""`python -m model_export bundle --recipe R.json --onnx NAME=FILE ... --parity FILE.npz`:
package models exported elsewhere (Keras through tf2onnx, scikit-learn through skl2onnx) as a
manifest v2 bundle.

The parity file is the proof that each ONNX file is the model its owner trained: for every
model NAME it holds, for each of the model's inputs, ``NAME/INPUT`` (rows of the tensor the
recipe feeds, batch axis first: `python -m alertfusion features --recipe` writes the nodes) and
``NAME/OUTPUT`` (what the original framework answered on those rows, OUTPUT being the recipe's
output name). ONNX Runtime must give the same within `--tolerance` or the model is refused.
The rows are also the golden set and, without calibration audio, int8's calibration.
Fitted scalers the recipe leaves null come from ``--scaler NODE=FILE.npz`` (arrays ``mean``
and ``scale``: scikit-learn StandardScaler's ``mean_`` and ``scale_``).
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Literal

import numpy as np
import onnx

from alertfusion.bundle_files import sha256_file
from alertfusion.manifest_v2 import ManifestV2
from alertfusion.recipe import schema as s
from model_export.errors import ExportError, ExportReason
from model_export.progress import Progress
from model_export.recipe_build import (
    PARITY_TOLERANCE,
    Built,
    assemble,
    calibration_windows,
    check_parity,
    finish_model,
    load_recipe,
    model_rows,
    onnx_shapes,
    producer_notes,
    run_onnx,
    with_scalers,
    write_manifest,
)


def _npz(path: Path, what: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: np.asarray(data[k]) for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ExportError(ExportReason.CHECKPOINT_UNREADABLE, f"{what} {path}: {exc}") from exc


def read_scalers(files: dict[str, Path]) -> dict[str, tuple[list, list]]:
    out = {}
    for node, path in files.items():
        arrays = _npz(path, f"--scaler {node}")
        if "mean" not in arrays or "scale" not in arrays:
            raise ExportError(
                ExportReason.CHECKPOINT_UNREADABLE,
                f"--scaler {node}: {path} needs arrays 'mean' and 'scale' (has {sorted(arrays)})",
            )
        mean, scale = (np.asarray(arrays[k], dtype=np.float64).ravel() for k in ("mean", "scale"))
        out[node] = (mean.tolist(), scale.tolist())
    return out


def _check_file(name: str, spec: s.ModelSpec, path: Path) -> None:
    """onnx.checker, and the recipe's input and output names present."""
    try:
        onnx.checker.check_model(str(path), full_check=False)
    except Exception as exc:  # onnx raises ValidationError, DecodeError, ...
        raise ExportError(
            ExportReason.CHECKPOINT_UNREADABLE,
            f"--onnx {name}={path}: not a valid ONNX model: "
            f"{str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__}",
        ) from exc
    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    inputs = [v.name for v in graph.input if v.name not in initializers]
    if sorted(inputs) != sorted(spec.inputs):
        raise ExportError(
            ExportReason.CHECKPOINT_MISMATCH,
            f"--onnx {name}: the file's inputs {sorted(inputs)} are not the recipe's "
            f"models.{name}.inputs {sorted(spec.inputs)}",
        )
    onnx_shapes(path, spec.output.name)  # the recipe's output, a tensor


def build_recipe_bundle(
    recipe_path: Path,
    onnx_files: dict[str, Path],
    parity_file: Path,
    out: Path,
    *,
    scalers: dict[str, Path] | None = None,
    tolerance: float = PARITY_TOLERANCE,
    quantize: Literal["none", "int8"] = "none",
    threshold: float = 0.99,
    keep_fp32: frozenset[str] = frozenset(),
    fp32_fallback: bool = False,
    calibration_audio: Path | None = None,
    bundle_version: str | None = None,
    description: str = "",
    force: bool = False,
    progress: Progress | None = None,
) -> ManifestV2:
    progress = progress or Progress()
    recipe = load_recipe(recipe_path)
    text = [n for n, m in recipe.models.items() if m.source == "transcript"]
    if text:
        raise ExportError(
            ExportReason.BUNDLE_INVALID,
            f"recipe {recipe.name}: transcript models ({', '.join(text)}) are packaged by "
            "`model_export bundle` from checkpoints for now, not with --onnx",
        )
    missing = sorted(set(recipe.models) - set(onnx_files))
    unknown = sorted(set(onnx_files) - set(recipe.models))
    if missing or unknown:
        raise ExportError(
            ExportReason.BUNDLE_INVALID,
            f"--onnx must name each model of recipe {recipe.name} once ({sorted(recipe.models)})"
            + (f"; missing {missing}" if missing else "")
            + (f"; not in the recipe {unknown}" if unknown else ""),
        )
    if scalers or any(
        isinstance(n, s.Affine) and (n.mean is None or n.scale is None)
        for n in recipe.features.values()
    ):
        recipe = with_scalers(recipe, read_scalers(scalers or {}))
    parity = _npz(parity_file, "--parity")
    rows: dict[str, dict[str, np.ndarray]] = {}
    for name, path in onnx_files.items():
        spec = recipe.models[name]
        if not Path(path).is_file():
            raise ExportError(ExportReason.CHECKPOINT_UNREADABLE, f"--onnx {name}: no file {path}")
        _check_file(name, spec, Path(path))
        keys = [f"{name}/{k}" for k in spec.inputs] + [f"{name}/{spec.output.name}"]
        absent = [k for k in keys if k not in parity]
        if absent:
            raise ExportError(
                ExportReason.PARITY_FAILED,
                f"--parity {parity_file}: no {', '.join(absent)} (arrays NAME/INPUT of inputs "
                "and NAME/OUTPUT of the reference outputs)",
            )
        sizes = {len(parity[k]) for k in keys}
        if len(sizes) != 1 or 0 in sizes:
            raise ExportError(
                ExportReason.PARITY_FAILED,
                f"--parity {parity_file}: {name}'s arrays have different or no rows {sizes}",
            )
        rows[name] = {
            k: np.ascontiguousarray(parity[f"{name}/{k}"], np.float32) for k in spec.inputs
        }
    calibration = None
    if quantize == "int8" and calibration_audio is not None:
        progress(f"calibration: windows of {calibration_audio}")
        calibration = model_rows(recipe, calibration_windows(recipe, calibration_audio))
    sums = {name: sha256_file(Path(p)) for name, p in sorted(onnx_files.items())}

    def build(partial: Path, work: Path) -> ManifestV2:
        built: dict[str, Built] = {}
        for name, path in onnx_files.items():
            spec = recipe.models[name]
            want = np.asarray(parity[f"{name}/{spec.output.name}"], dtype=np.float64)
            got = run_onnx(Path(path), rows[name], spec.output.name)
            if want.shape != got.shape and want.size == got.size:
                want = want.reshape(got.shape)  # (N,) against (N, 1)
            value = check_parity(name, got, want, tolerance)
            progress(f"{name}: ONNX against the parity file's outputs, max |difference| "
                     f"{value:.2e} on {len(got)} rows (tolerance {tolerance:g})")  # fmt: skip
            fp32 = work / f"{name}.fp32.onnx"
            fp32.write_bytes(Path(path).read_bytes())
            feeds = rows[name]
            if calibration is not None:
                feeds = {k: np.concatenate([v, calibration[name][k]]) for k, v in feeds.items()}
            built[name] = finish_model(
                name, spec, fp32, rows[name] if quantize == "none" else feeds, value, partial,
                int8=quantize == "int8" and name not in keep_fp32, threshold=threshold,
                fp32_fallback=fp32_fallback, progress=progress, source_sha256=sums[name],
            )  # fmt: skip
        digest = hashlib.sha256(";".join(f"{k}={v}" for k, v in sums.items()).encode())
        digest.update(recipe.model_dump_json().encode() + quantize.encode())
        return write_manifest(
            recipe,
            built,
            partial,
            bundle_version=bundle_version or f"b-{digest.hexdigest()[:12]}",
            trained=True,
            description=description,
            producer=producer_notes(
                {"source": "ONNX files exported elsewhere (model_export bundle --onnx)"}
            ),
        )

    return assemble(out, force=force, progress=progress, build=build)
