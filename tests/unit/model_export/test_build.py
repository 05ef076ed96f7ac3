"""Build plumbing: one build at a time per output directory."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import pytest

from model_export.outputs import output_lock
from model_export.progress import Progress

pytestmark = pytest.mark.unit

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_a_second_build_in_the_same_directory_waits_for_the_first(tmp_path: Path) -> None:
    other = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path), "1.0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "locked"
        stream = io.StringIO()
        start = time.perf_counter()
        with output_lock([tmp_path], Progress(stream)):
            waited = time.perf_counter() - start
            with output_lock([tmp_path], Progress(stream)):  # re-entrant in one process
                pass
        assert other.wait(timeout=10) == 0
    finally:
        other.kill()
    assert waited >= 0.5
    assert stream.getvalue().count("waiting for another model_export build") == 1
    assert list(tmp_path.iterdir()) == []  # the lock leaves no file behind
