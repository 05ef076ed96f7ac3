"""Installed size of a set of distributions, from their RECORD file lists (no bytecode), and
what of the runtime lock the image ships."""

from __future__ import annotations

import re
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: what the original server imported (PyTorch, librosa, scikit-image, transformers, KoBERT's
#: SentencePiece); their own dependencies are followed from the installed metadata
SEED_ROOTS = ("torch", "librosa", "scikit-image", "transformers", "sentencepiece", "numpy")


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;(]", requirement.strip(), maxsplit=1)[0]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_lock(path: Path = REPO / "requirements.txt") -> list[str]:
    """The distributions pinned in the runtime lock."""
    names = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.append(_name(line))
    return names


def closure(roots: tuple[str, ...] | list[str]) -> list[str]:
    """`roots` and every installed distribution they require (extras and markers ignored,
    only requirements without an ``extra ==`` marker are followed)."""
    seen: dict[str, str] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        key = _norm(name)
        if key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[key] = dist.metadata["Name"]
        for req in dist.requires or []:
            if "extra ==" in req:
                continue
            todo.append(_name(req))
    return sorted(seen.values())


def installed_mb(names: list[str] | tuple[str, ...]) -> tuple[float, list[str]]:
    """Megabytes (10^6 bytes) of the installed files of `names`, without __pycache__ and .pyc;
    and the names that are not installed."""
    total = 0
    missing = []
    for name in names:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        for file in dist.files or []:
            if "__pycache__" in file.parts or file.suffix == ".pyc":
                continue
            located = Path(str(dist.locate_file(file)))
            if located.is_file():
                total += located.stat().st_size
    return total / 1e6, missing


def image_trim_mb() -> float:
    """Megabytes the image build removes from the installed runtime lock: functions/Dockerfile
    runs functions/slim_botocore.py on its site-packages, and so does this, on a copy of the
    installed botocore data directory."""
    from functions.slim_botocore import slim

    data = Path(str(metadata.distribution("botocore").locate_file("botocore/data")))
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(data, Path(tmp) / "botocore" / "data")
        done = slim(Path(tmp))
    return (done["bytes_before"] - done["bytes_after"]) / 1e6


def report() -> dict[str, object]:
    installed, ours_missing = installed_mb(runtime_lock())
    ours = installed - image_trim_mb()
    seed_names = closure(SEED_ROOTS)
    seed, _ = installed_mb(seed_names)
    return {
        "ours": round(ours, 1),
        "ours_installed": round(installed, 1),
        "seed": round(seed, 1),
        "ours_packages": len(runtime_lock()),
        "ours_not_installed": ours_missing,
        "seed_packages": seed_names,
        "method": "sum of installed files listed in each distribution's RECORD, without "
        "__pycache__/*.pyc (ours: every package of requirements.txt, less what the image build "
        "removes (functions/slim_botocore.py); ours_installed: before that; seed: the original "
        "server's imports and their installed dependencies)",
    }
