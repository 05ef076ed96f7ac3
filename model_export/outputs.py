"""Where builds write: a free or replaceable output, one build per directory, atomic publish."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from alertfusion.manifest import MANIFEST_FILE
from model_export.errors import ExportError, ExportReason
from model_export.progress import Progress


def check_output(out: Path, *, force: bool) -> None:
    """OUTPUT_EXISTS unless `out` is free, or `force` and it is a bundle (or empty) to replace.

    Even with --force, a directory that holds anything but a bundle is never replaced: a
    mistyped --out must not delete someone's files.
    """
    if not (out.exists() or out.is_symlink()):
        return
    if not force:
        raise ExportError(
            ExportReason.OUTPUT_EXISTS, f"{out} already exists; pass --force to replace it"
        )
    if out.is_symlink() or not out.is_dir():
        raise ExportError(
            ExportReason.OUTPUT_EXISTS, f"{out} exists and is not a directory; not replacing it"
        )
    if any(out.iterdir()) and not (out / MANIFEST_FILE).is_file():
        raise ExportError(
            ExportReason.OUTPUT_EXISTS,
            f"{out} is not a model bundle (no {MANIFEST_FILE}); not replacing it even with --force",
        )


_LOCKED: set[Path] = set()


@contextlib.contextmanager
def output_lock(directories: list[Path], progress: Progress) -> Iterator[None]:
    """Hold an exclusive flock on each directory (where bundles and checkpoints are built), so
    two builds into the same place (two `make setup`s, say) run one after the other instead of
    replacing each other's files. Re-entrant within the process."""
    held: list[tuple[Path, int]] = []
    try:
        for directory in sorted({d.absolute() for d in directories} - _LOCKED):
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(directory, os.O_RDONLY)
            held.append((directory, fd))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                progress(f"waiting for another model_export build in {directory}")
                fcntl.flock(fd, fcntl.LOCK_EX)
            _LOCKED.add(directory)
        yield
    finally:
        for directory, fd in held:
            _LOCKED.discard(directory)
            os.close(fd)  # releases the lock


def publish(partial: Path, out: Path) -> None:
    """Move the finished bundle into place (replacing an old one as late as possible)."""
    if not out.exists():
        os.rename(partial, out)
        return
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(out, old)
    try:
        os.rename(partial, out)
    except OSError:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
