"""sha256 of model-bundle files: the one implementation model_export and the runtime share."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from alertfusion.errors import BundleError, ReasonCode

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks (bundle files reach hundreds of MB)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_file_sums(directory: Path, expected: Mapping[str, str]) -> None:
    """Raise BundleError (BUNDLE_INVALID) naming every file of `expected` (name -> sha256)
    that is missing from `directory` or whose bytes do not match its sum."""
    directory = Path(directory)
    missing: list[str] = []
    changed: list[str] = []
    for name, want in sorted(expected.items()):
        path = directory / name
        if not path.is_file():
            missing.append(name)
        elif sha256_file(path) != want:
            changed.append(name)
    if missing or changed:
        parts = []
        if missing:
            parts.append("missing: " + ", ".join(missing))
        if changed:
            parts.append("sha256 differs from the manifest: " + ", ".join(changed))
        raise BundleError(
            f"bundle {directory} is not intact ({'; '.join(parts)})",
            code=ReasonCode.BUNDLE_INVALID,
            details={"missing": missing, "changed": changed},
        )
