"""`make synth`'s command with the pinned CDK CLI: offline, no AWS account, three stacks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.infra.conftest import FALLBACK_CIDRS

pytestmark = [pytest.mark.infra, pytest.mark.slow]

CDK = REPO / "node_modules" / ".bin" / "cdk"
LAYER_DIR = REPO / "build" / "layers" / "core"


def _cdk(args: list[str], outdir: Path) -> subprocess.CompletedProcess[str]:
    assert CDK.exists(), "the pinned CDK CLI is missing: run `make setup` (npm ci)"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "CDK_"))  # no account, no credentials
    }
    env["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] = "20"
    env["CDK_DISABLE_VERSION_CHECK"] = "1"
    return subprocess.run(
        [str(CDK), "synth", "--quiet", "--no-notices", "--output", str(outdir), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture
def keep_layer_dir_as_found() -> Iterator[None]:
    """The app builds the core layer into build/layers/core (as `make synth` does); remove
    what this test created (parents only when left empty)."""
    created = [p for p in (LAYER_DIR.parent.parent, LAYER_DIR.parent) if not p.exists()]
    layer_existed = LAYER_DIR.exists()
    yield
    if not layer_existed:
        shutil.rmtree(LAYER_DIR, ignore_errors=True)
    for parent in reversed(created):
        if parent.exists() and not any(parent.iterdir()):
            parent.rmdir()


@pytest.mark.usefixtures("keep_layer_dir_as_found")
def test_make_synth_command_writes_all_three_templates(
    placeholder_bundle: str, tmp_path: Path
) -> None:
    proc = _cdk(
        [
            "-c",
            "fallback=true",
            "-c",
            f"fallback_allowed_cidrs={FALLBACK_CIDRS[0]}",
            "-c",
            f"bundle={placeholder_bundle}",
            "-c",
            "stage=clitest",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    stacks = {
        name
        for name, artifact in manifest["artifacts"].items()
        if artifact["type"] == "aws:cloudformation:stack"
    }
    assert stacks == {
        "alertfusion-clitest-pipeline",
        "alertfusion-clitest-api",
        "alertfusion-clitest-fallback",
    }
    for name in stacks:
        assert json.loads((tmp_path / f"{name}.template.json").read_text())["Resources"]


def test_synth_refuses_a_fallback_without_cidrs_and_says_how(
    placeholder_bundle: str, tmp_path: Path
) -> None:
    proc = _cdk(["-c", "fallback=true", "-c", f"bundle={placeholder_bundle}"], tmp_path)
    assert proc.returncode != 0
    assert "-c fallback_allowed_cidrs=" in proc.stderr
    assert not list(tmp_path.glob("*.template.json"))
