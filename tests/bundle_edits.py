"""Edits of a copied model bundle for tests: manifest changes, a re-signed golden set, int8
tolerances no CPU meets, fp32 fallbacks taken from the fp32 bundle."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from alertfusion.bundle_files import sha256_file
from alertfusion.manifest import MANIFEST_FILE

Edit = Callable[[dict[str, Any]], None]


def copy_bundle(bundle: Path, tmp_path: Path, name: str = "bundle") -> Path:
    dest = tmp_path / name
    shutil.copytree(bundle, dest)
    return dest


def edit_manifest(bundle: Path, edit: Edit) -> None:
    path = bundle / MANIFEST_FILE
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw))


def resign_golden(bundle: Path, file: str = "golden.npz") -> None:
    """Make the manifest name `file`'s current bytes (a deliberately changed golden set)."""

    def edit(raw: dict[str, Any]) -> None:
        raw["golden"]["sha256"] = sha256_file(bundle / file)
        raw["golden"]["size_bytes"] = (bundle / file).stat().st_size

    edit_manifest(bundle, edit)


def rewrite_golden(bundle: Path, change: Callable[[dict[str, np.ndarray]], None]) -> None:
    path = bundle / "golden.npz"
    with np.load(path) as data:
        arrays = {k: np.array(data[k]) for k in data.files}
    change(arrays)
    with path.open("wb") as f:
        np.savez_compressed(
            f,
            **arrays,  # type: ignore[arg-type]  # numpy's stub: **arrays could fill allow_pickle
        )
    resign_golden(bundle, "golden.npz")


def strict_int8(bundle: Path) -> None:
    """int8 tolerances far below what int8 really does here: the self-check fails, as on a
    CPU whose int8 kernels misbehave, while fp32 still matches the golden outputs."""

    def edit(raw: dict[str, Any]) -> None:
        for name in ("audio_binary", "audio_multiclass"):
            raw["models"][name]["quantization_report"]["max_logit_spread"] = 1e-6

    edit_manifest(bundle, edit)


def with_fallback(int8: Path, fp32: Path, tmp_path: Path) -> Path:
    """The int8 bundle with the fp32 bundle's models as its fallbacks (the same seeded
    checkpoints, so they are the int8 models' own fp32 graphs)."""
    bundle = copy_bundle(int8, tmp_path, "with-fallback")

    def edit(raw: dict[str, Any]) -> None:
        for name in ("audio_binary", "audio_multiclass", "text"):
            src = fp32 / f"{name}.onnx"
            shutil.copyfile(src, bundle / f"{name}.fp32.onnx")
            raw["models"][name]["fp32_fallback"] = {
                "file": f"{name}.fp32.onnx",
                "sha256": sha256_file(src),
                "size_bytes": src.stat().st_size,
            }

    edit_manifest(bundle, edit)
    return bundle
