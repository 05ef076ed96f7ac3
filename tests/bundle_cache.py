"""The tiny demo bundles every tier tests with, cached under build/test-bundles/<key>/.

An entry holds `tiny-fp32` and `tiny-int8` (made by `model_export.demo.build_demo_bundle`,
size tiny, seed 0) with their demo checkpoints beside them (`<name>-checkpoints`), and
`key.json`, the inputs its key is the hash of:

* the sources that make the bytes: every `model_export/*.py`, the `alertfusion` modules they
  import (followed through the core library's own imports), and this file (the recipe);
* the calibration audio (`samples/`);
* the versions of the packages the build runs (PyTorch, ONNX, ONNX Runtime, ...) and Python's;
* the CPU (`alertfusion.selfcheck.cpu_info`): int8 kernels, and PyTorch's float kernels in the
  demo's fitting steps, give slightly different numbers by instruction set, and a bundle's
  golden set records the build CPU's own int8 outputs.

Reading needs none of the export toolchain, so the unit tier runs without PyTorch; building
needs it (`make test-bundles`, or the first test session that can import it). An entry is built
in a temporary directory and renamed into place under a lock on the cache directory, so two test
sessions never see half an entry and never build the same one twice at once.

`python -m tests.bundle_cache` makes sure this checkout's entry exists and prints its path.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

REPO = Path(__file__).resolve().parent.parent
CORE = REPO / "layers" / "core" / "python"
#: the cache directory (default build/test-bundles); an absolute path overrides it
ROOT_ENV = "TEST_BUNDLES_DIR"
KEY_FILE = "key.json"
#: bundle directory -> `quantize`; each has `<name>-checkpoints` beside it
VARIANTS: dict[str, Literal["none", "int8"]] = {"tiny-fp32": "none", "tiny-int8": "int8"}
SIZE: Literal["tiny"] = "tiny"
SEED = 0
CALIBRATION_AUDIO = REPO / "samples"
#: the distributions whose code runs in a build (their versions are part of the key)
DISTRIBUTIONS = (
    "torch",
    "transformers",
    "safetensors",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "sentencepiece",
    "tokenizers",
    "protobuf",
    "numpy",
    "soundfile",
    "soxr",
    "av",
    "pydantic",
)
#: what a build imports that the runtime does not have
TOOLCHAIN = ("torch", "transformers", "sentencepiece", "onnx")
#: entries nobody has used for this long are removed when a new one is built
UNUSED_DAYS = 7
#: what the cache directory holds: entries, and the staging directories of builds
ENTRY_NAME = re.compile(r"[0-9a-f]{16}")
STAGING_NAME = re.compile(r"\.[0-9a-f]{16}\.partial-.+")


class CacheError(RuntimeError):
    """This checkout's entry is missing and could not be built."""


def cache_root() -> Path:
    override = os.environ.get(ROOT_ENV)
    return Path(override) if override else REPO / "build" / "test-bundles"


# ------------------------------------------------------------------------------------- key


def _first_party_imports(path: Path) -> set[str]:
    """Modules of `alertfusion` a source file imports, anywhere in it (lazy imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from alertfusion import aws`: the name may be a module
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {name for name in found if name.split(".")[0] == "alertfusion"}


def _module_file(name: str) -> Path | None:
    base = CORE.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None  # a class or function imported by name


def source_files() -> list[Path]:
    """model_export/*.py, this file, and the alertfusion modules they reach."""
    todo = [*sorted((REPO / "model_export").glob("*.py")), Path(__file__).resolve()]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _first_party_imports(path):
            parts = name.split(".")
            # importing a.b.c runs a/__init__.py and a/b/__init__.py too
            for i in range(1, len(parts) + 1):
                module = _module_file(".".join(parts[:i]))
                if module is not None and module not in seen:
                    todo.append(module)
    return sorted(seen)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "absent"


def key_inputs() -> dict[str, Any]:
    """Everything the entry's bytes depend on (see the module docstring)."""
    from alertfusion.selfcheck import cpu_info

    audio = sorted(p for p in CALIBRATION_AUDIO.rglob("*") if p.is_file())
    return {
        "recipe": {"size": SIZE, "seed": SEED, "variants": VARIANTS},
        "sources": {p.relative_to(REPO).as_posix(): _sha256(p) for p in source_files()},
        "calibration_audio": {
            p.relative_to(CALIBRATION_AUDIO).as_posix(): _sha256(p) for p in audio
        },
        "versions": {
            "python": platform.python_version(),
            **{name: _version(name) for name in DISTRIBUTIONS},
        },
        "cpu": cpu_info().to_dict(),
    }


def cache_key(inputs: dict[str, Any]) -> str:
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------- reading


def is_complete(entry: Path) -> bool:
    """Entries appear by one rename once everything in them is written, key.json last."""
    return (entry / KEY_FILE).is_file()


def missing_toolchain() -> str | None:
    """Why this process cannot build an entry (a module it cannot import), or None."""
    for name in TOOLCHAIN:
        try:
            if importlib.util.find_spec(name) is None:
                return f"{name} is not installed"
        except ImportError as exc:  # refused by tests/conftest.py's import block
            return str(exc)
        except ValueError:  # imported already, without a spec
            continue
    return None


def _child_env() -> dict[str, str]:
    paths = [str(REPO), str(CORE), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def ensure() -> Path:
    """This checkout's entry; built first, in a child process, if it is missing and this
    process could import the export toolchain, else a CacheError naming `make test-bundles`."""
    entry = cache_root() / cache_key(key_inputs())
    if not is_complete(entry):
        reason = missing_toolchain()
        if reason is None:
            code = subprocess.run(
                [sys.executable, "-m", "tests.bundle_cache"], cwd=REPO, env=_child_env()
            ).returncode
            reason = (
                f"`python -m tests.bundle_cache` failed with exit code {code}, see its output"
                if code
                else "its sources changed while it was being built"
            )
        if not is_complete(entry):
            raise CacheError(
                f"the tiny test bundles for this checkout and CPU ({entry}) are missing and "
                f"cannot be built here ({reason}): run `make test-bundles` (it needs PyTorch) "
                "and try again"
            )
    try:
        os.utime(entry / KEY_FILE)  # in use: not pruned
    except OSError:
        pass
    return entry


# --------------------------------------------------------------------------------- building


def _prune(root: Path, keep: Path) -> None:
    """Remove leftovers of interrupted builds and entries unused for UNUSED_DAYS (the caller
    holds the cache lock, so no build is running)."""
    cutoff = time.time() - UNUSED_DAYS * 86_400
    for path in root.iterdir():
        if path == keep or path.is_symlink() or not path.is_dir():
            continue
        if STAGING_NAME.fullmatch(path.name):
            shutil.rmtree(path, ignore_errors=True)
        elif ENTRY_NAME.fullmatch(path.name):
            try:
                unused = (path / KEY_FILE).stat().st_mtime < cutoff
            except OSError:
                unused = True
            if unused:
                shutil.rmtree(path, ignore_errors=True)


def build(entry: Path, inputs: dict[str, Any]) -> bool:
    """Build `entry` unless another process did while this one waited; True if built here."""
    from model_export.demo import build_demo_bundle
    from model_export.outputs import output_lock
    from model_export.progress import Progress

    progress = Progress.to_stderr()
    root = entry.parent
    with output_lock([root], progress):
        if is_complete(entry):
            return False
        _prune(root, keep=entry)
        staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.partial-", dir=root))
        try:
            for name, quantize in VARIANTS.items():
                progress(f"test bundles: {name}")
                build_demo_bundle(
                    staging / name,
                    size=SIZE,
                    quantize=quantize,
                    seed=SEED,
                    calibration_audio=CALIBRATION_AUDIO,
                    progress=progress,
                )
            (staging / KEY_FILE).write_text(json.dumps(inputs, indent=2) + "\n", "utf-8")
            staging.chmod(0o755)
            os.rename(staging, entry)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return True


def main() -> int:
    inputs = key_inputs()
    entry = cache_root() / cache_key(inputs)
    if is_complete(entry):
        print(f"test bundles: {entry} (up to date)")
        return 0
    reason = missing_toolchain()
    if reason is not None:
        print(f"test bundles: {entry} is missing and cannot be built: {reason}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    built = build(entry, inputs)
    how = f"built in {time.perf_counter() - start:.0f} s" if built else "built by another process"
    print(f"test bundles: {entry} ({how})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
