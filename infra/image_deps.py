"""`make image-deps`: every pin of the runtime lock has a wheel the image can install.

The image installs locks/runtime.txt (requirements.txt with hashes) with `pip install
--no-deps --only-binary=:all: --require-hashes` on the Lambda base image, so each pin needs
a binary wheel for the image's CPython, for its architecture (x86_64 by default, aarch64
with `-c architecture=arm64`) and for a glibc no newer than the base image's Amazon Linux,
whose sha256 the lock lists. This asks PyPI (the index the image build uses) exactly that
question for both architectures, with `pip download` under the same options, without
docker. It needs the network, so it is a make target, not a test.

    python -m infra.image_deps [--python 3.12] [--glibc 2.34] [--machine x86_64 ...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from infra.build_layer import pinned_versions
from infra.config import LAMBDA_GLIBC, LAMBDA_PYTHON_VERSION, REPO_ROOT

RUNTIME_LOCK = REPO_ROOT / "locks" / "runtime.txt"

MACHINES = ("x86_64", "aarch64")
PYPI = "https://pypi.org/simple"
#: manylinux2014 is glibc 2.17, the oldest tag pip still accepts by default
_OLDEST_GLIBC_MINOR = 17


@dataclass(frozen=True)
class Target:
    python: str
    glibc: tuple[int, int]
    machine: str

    def __str__(self) -> str:
        return (
            f"cp{self.python.replace('.', '')} glibc {self.glibc[0]}.{self.glibc[1]} {self.machine}"
        )


def platform_tags(machine: str, glibc: tuple[int, int]) -> list[str]:
    """Every manylinux tag pip accepts on `machine` with `glibc` (newest first)."""
    major, minor = glibc
    if major != 2 or minor < _OLDEST_GLIBC_MINOR:
        raise ValueError(f"glibc {major}.{minor} is older than manylinux2014")
    tags = [f"manylinux_2_{m}_{machine}" for m in range(minor, _OLDEST_GLIBC_MINOR - 1, -1)]
    return [*tags, f"manylinux2014_{machine}"]


def _pip_env() -> dict[str, str]:
    """pip with no configuration of this machine (its local indexes and find-links): the
    image build sees PyPI only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _download(target: Target, specs: list[str], dest: Path) -> subprocess.CompletedProcess[str]:
    """`pip download` of `specs` (requirement specifiers or pip options such as
    `--require-hashes -r FILE`) as the image's pip would select them."""
    platforms = [
        arg for tag in platform_tags(target.machine, target.glibc) for arg in ("--platform", tag)
    ]
    return subprocess.run(  # noqa: S603 - fixed argv, pinned specifiers from requirements.txt
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--implementation",
            "cp",
            "--python-version",
            target.python,
            *platforms,
            "--index-url",
            PYPI,
            "--dest",
            str(dest),
            *specs,
        ],
        env=_pip_env(),
        capture_output=True,
        text=True,
        check=False,
    )


def missing_wheels(target: Target, lock: Path = RUNTIME_LOCK) -> list[str]:
    """The pins of `lock` without a wheel (with a listed hash) for `target`; empty: the
    image's pip installs them all."""
    with tempfile.TemporaryDirectory(prefix="image-deps-") as tmp:
        whole = _download(target, ["--require-hashes", "-r", str(lock)], Path(tmp))
        if whole.returncode == 0:
            return []
        # pip stops at the first miss: ask per pin to name every one
        specs = [f"{name}=={version}" for name, version in sorted(pinned_versions(lock).items())]
        missing = [s for s in specs if _download(target, [s], Path(tmp)).returncode != 0]
        return missing or [f"(hash check) {whole.stderr.strip().splitlines()[-1]}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=LAMBDA_PYTHON_VERSION)
    parser.add_argument(
        "--glibc",
        default=".".join(map(str, LAMBDA_GLIBC)),
        help="glibc of the base image's Amazon Linux (2023: 2.34; Amazon Linux 2: 2.26)",
    )
    parser.add_argument("--machine", action="append", choices=MACHINES)
    parser.add_argument("--lock", type=Path, default=RUNTIME_LOCK)
    args = parser.parse_args(argv)
    glibc_major, glibc_minor = (int(part) for part in args.glibc.split("."))
    failed = False
    for machine in args.machine or MACHINES:
        target = Target(args.python, (glibc_major, glibc_minor), machine)
        missing = missing_wheels(target, args.lock)
        status = "ok" if not missing else "NO WHEEL for " + ", ".join(missing)
        sys.stdout.write(f"{args.lock.relative_to(REPO_ROOT)} on {target}: {status}\n")
        failed = failed or bool(missing)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
