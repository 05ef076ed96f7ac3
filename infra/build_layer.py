"""Build the zip functions' core layer (`alertfusion` under `python/`) without docker.

The zip functions (starter, sweeper) run with two layers: this one and AWS's published
Powertools v3 layer (`AWSLambdaPowertoolsPythonV3-python312-<arch>`, the version that
requirements.txt pins). AWS builds that layer from `aws-lambda-powertools[all]`, which at
the pinned version already brings pydantic v2 (+ pydantic-core compiled for the layer's
Python), pydantic-settings, python-dotenv and the X-Ray SDK; the Lambda runtime brings
boto3. So the core layer normally holds only the pure-Python `alertfusion` package.

Anything the zip functions need that neither the runtime nor the Powertools layer provides
(`ZIP_FUNCTION_REQUIREMENTS` minus both) is installed from PyPI for the Lambda platform
(`--platform manylinux2014_<machine> --only-binary=:all: --python-version 3.12`) at the exact
version requirements.txt pins; that is the only case that needs the network.

    python -m infra.build_layer [--out build/layers/core]
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from infra.config import LAMBDA_PYTHON_VERSION, REPO_ROOT, REQUIREMENTS_FILE

CORE_PACKAGE_DIR = REPO_ROOT / "layers" / "core" / "python" / "alertfusion"
DEFAULT_LAYER_DIR = REPO_ROOT / "build" / "layers" / "core"

#: What `alertfusion` needs on the zip functions' import path (its heavy imports are lazy).
ZIP_FUNCTION_REQUIREMENTS: tuple[str, ...] = (
    "aws-lambda-powertools",
    "boto3",
    "pydantic",
    "pydantic-settings",
)

#: Packages the Lambda Python runtime itself provides (the Powertools layer strips them).
LAMBDA_RUNTIME_DISTRIBUTIONS: frozenset[str] = frozenset(
    canonicalize_name(name)
    for name in ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3")
)

_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")


def lambda_marker_environment() -> dict[str, str]:
    """Marker values of the Lambda runtime (not of the interpreter running this script)."""
    env: dict[str, str] = {key: str(value) for key, value in default_environment().items()}
    env.update(
        python_version=LAMBDA_PYTHON_VERSION,
        python_full_version=f"{LAMBDA_PYTHON_VERSION}.0",
        sys_platform="linux",
        platform_system="Linux",
        platform_machine="x86_64",
        implementation_name="cpython",
        platform_python_implementation="CPython",
        os_name="posix",
    )
    return env


def distribution_closure(root: str, extras: Iterable[str] = ()) -> set[str]:
    """Canonical names of `root[extras]` and everything it requires, read from the installed
    metadata (requirements.txt pins what is installed). Requirements that are not installed
    here are still listed (they are in the layer) but not followed further."""
    env = lambda_marker_environment()
    seen: set[str] = set()
    todo: list[tuple[str, tuple[str, ...]]] = [(root, tuple(extras))]
    while todo:
        name, wanted = todo.pop()
        canonical = canonicalize_name(name)
        if canonical in seen and not wanted:
            continue
        seen.add(canonical)
        try:
            requires = md.distribution(name).requires or []
        except md.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            active = req.marker is None or any(
                req.marker.evaluate({**env, "extra": extra}) for extra in (*wanted, "")
            )
            if active:
                todo.append((req.name, tuple(req.extras)))
    return seen


def powertools_layer_distributions() -> set[str]:
    """What AWS's Powertools v3 layer holds: `aws-lambda-powertools[all]` minus what it strips
    because the Lambda runtime already has it."""
    return distribution_closure("aws-lambda-powertools", ["all"]) - LAMBDA_RUNTIME_DISTRIBUTIONS


def pinned_versions(path: Path = REQUIREMENTS_FILE) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)==([^\s;#]+)", line.strip())
        if match:
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def missing_from_layers() -> list[str]:
    """Requirement specifiers (pinned) the core layer must carry itself."""
    provided = powertools_layer_distributions() | LAMBDA_RUNTIME_DISTRIBUTIONS
    needed: set[str] = set()
    for name in ZIP_FUNCTION_REQUIREMENTS:
        needed |= distribution_closure(name)
    pins = pinned_versions()
    missing = sorted(needed - provided)
    unpinned = [name for name in missing if name not in pins]
    if unpinned:
        raise RuntimeError(f"requirements.txt must pin {', '.join(unpinned)} for the core layer")
    return [f"{name}=={pins[name]}" for name in missing]


#: `-c architecture=` -> the machine name of manylinux wheel tags
WHEEL_MACHINES = {"x86_64": "x86_64", "arm64": "aarch64"}


def _pip_install_for_lambda(specs: list[str], target: Path, architecture: str) -> None:
    subprocess.run(  # noqa: S603 - fixed argv, pinned specifiers from requirements.txt
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-compile",
            "--only-binary=:all:",
            "--platform",
            f"manylinux2014_{WHEEL_MACHINES[architecture]}",
            "--implementation",
            "cp",
            "--python-version",
            LAMBDA_PYTHON_VERSION,
            "--target",
            str(target),
            *specs,
        ],
        check=True,
    )


def build_core_layer(out: Path = DEFAULT_LAYER_DIR, architecture: str = "x86_64") -> Path:
    """Write the layer directory (`out/python/alertfusion/...`) and return `out`; wheels it
    must carry itself (normally none) are those for `architecture` (x86_64 or arm64).

    Built next to `out` and renamed into place, so a concurrent synth never sees half a layer.
    """
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        python_dir = staging / "python"
        shutil.copytree(CORE_PACKAGE_DIR, python_dir / "alertfusion", ignore=_IGNORE)
        extra = missing_from_layers()
        if extra:
            _pip_install_for_lambda(extra, python_dir, architecture)
        for path in staging.rglob("*"):
            # Lambda runs as an unprivileged user: everything readable, nothing writable.
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        os.chmod(staging, 0o755)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_LAYER_DIR)
    parser.add_argument("--architecture", choices=sorted(WHEEL_MACHINES), default="x86_64")
    args = parser.parse_args(argv)
    out = build_core_layer(args.out, args.architecture)
    sys.stdout.write(f"core layer: {out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
