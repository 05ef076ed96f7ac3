"""`python -m devstack.soak` as a command: a short run with random faults on the tiny bundle
ends with every must-be-zero count 0 and exit status 0; a run where an upload's S3 event is
swallowed (a fault the pipeline is not built to repair) counts it lost and exits 1, and
does not stop sending while it waits for that job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MUST_BE_ZERO = (
    "lost",
    "duplicate_Transcribe_jobs",
    "duplicate_alerts",
    "lost_alerts",
    "verdicts_whose_bytes_differ_from_the_object_they_name",
)

#: the soak with the starter's first record dropped unseen: the upload is in S3, its job
#: stays UPLOAD_PENDING, and nothing redelivers an event S3 never sent
SWALLOW_FIRST_RECORD = """
import sys
import functions.starter.app as starter
from alertfusion.pipeline.outcomes import UploadOutcome
from devstack import soak

original, dropped = starter.handle_upload, []

def handle_upload(record, **kwargs):
    if not dropped:
        dropped.append(record.s3.get_object.key)
        return UploadOutcome(record.s3.get_object.key, None, "ignored", detail="dropped")
    return original(record, **kwargs)

starter.handle_upload = handle_upload
sys.exit(soak.main(sys.argv[1:]))
"""


def _soak(
    tmp_path: Path, bundle: Path, *args: str, code: str | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT")}
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO / "layers" / "core" / "python"), str(REPO)]),
        OPENBLAS_NUM_THREADS="1",
    )
    counts = tmp_path / "soak.json"
    command = ["-c", code] if code else ["-m", "devstack.soak"]
    done = subprocess.run(
        [sys.executable, *command, "--bundle", str(bundle), "--json", str(counts)]
        + ["--log", str(tmp_path / "soak.log"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    report = json.loads(counts.read_text("utf-8")) if counts.is_file() else {}
    return done, report


def test_a_short_soak_with_random_faults_counts_zero(tmp_path: Path, tiny_bundle: Path) -> None:
    done, report = _soak(
        tmp_path, tiny_bundle, "--uploads", "40", "--faults", "random", "--seed", "1"
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert report["accepted"] == 40
    assert report["done"] + sum(report["failed"].values()) == 40
    assert {name: report[name] for name in MUST_BE_ZERO} == dict.fromkeys(MUST_BE_ZERO, 0)
    # the run did inject faults, and their kinds are the soak's
    assert sum(report["faults"].values()) > 0, report["faults"]
    assert "lost: 0\n" in done.stdout


def test_a_lost_upload_makes_the_soak_exit_1(tmp_path: Path, tiny_bundle: Path) -> None:
    done, report = _soak(
        tmp_path,
        tiny_bundle,
        "--uploads",
        "3",
        "--faults",
        "none",
        "--settle-seconds",
        "5",
        "--in-flight",
        "1",
        code=SWALLOW_FIRST_RECORD,
    )
    assert done.returncode == 1, done.stdout + done.stderr[-3000:]
    assert report["lost"] == 1
    assert report["done"] + sum(report["failed"].values()) == 2
    assert "lost: 1  <-- must be 0" in done.stdout
    assert "(UPLOAD_PENDING)" in done.stdout
    # one upload at a time: the drive waited for the lost job, then sent on
    assert "soak: 1 jobs unfinished; sending on" in done.stdout
