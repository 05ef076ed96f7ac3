"""`make demo ARGS="--recipe NAME"` and `make serve ARGS="--bundle DIR --bundle DIR2"`: their
arguments, and the Makefile building a recipe's demo bundle when missing (a dry run)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from devstack import demo, serve
from tests.conftest import REPO

pytestmark = pytest.mark.unit


def test_demo_recipe_runs_on_its_demo_bundle() -> None:
    args = demo.parse_args(["--recipe", "infant-cry"])
    assert args.bundle == REPO / "build" / "models" / "infant-cry"
    assert demo.parse_args([]).bundle == demo.DEFAULT_BUNDLE
    with pytest.raises(SystemExit):
        demo.parse_args(["--recipe", "infant-cry", "--bundle", "x"])


def test_demo_refuses_an_unknown_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    args = demo.parse_args(["--recipe", "no-such-recipe"])
    lines: list[str] = []
    assert demo.run(args, lambda line="": lines.append(line)) == 2  # type: ignore[arg-type]
    assert lines == ["demo: no recipe recipes/no-such-recipe.json"]


def test_serve_names_the_other_bundles_by_their_directory(tmp_path: Path) -> None:
    cry, bark = tmp_path / "infant-cry", tmp_path / "dog-bark"
    assert serve.named_bundles([cry, bark]) == f"infant-cry={cry},dog-bark={bark}"
    assert serve.named_bundles([]) == ""
    with pytest.raises(ValueError, match="given already"):
        serve.named_bundles([cry, tmp_path / "x" / "infant-cry"])
    for bad in ("default", "Has Spaces"):
        with pytest.raises(ValueError, match="cannot name a bundle"):
            serve.named_bundles([tmp_path / bad])


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_demo_builds_the_recipes_bundle_when_missing() -> None:
    """A dry run (nothing executes): every setup step taken as done."""
    done = [
        "-o",
        ".venv/.installed",
        "-o",
        "node_modules/.installed",
        "-o",
        "build/models/demo/manifest.json",
        "-o",
        "system-deps",
        "-o",
        "test-bundles",
        "-W",
        "recipes/dog-bark.json",
    ]
    out = subprocess.run(
        ["make", "-n", "--no-print-directory", "demo", "ARGS=--recipe dog-bark", *done],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    lines = [
        line.strip() for line in out.splitlines() if "model_export" in line or "devstack" in line
    ]
    assert lines[0].endswith(
        "-m model_export demo --recipe recipes/dog-bark.json --out build/models/dog-bark --force"
    )
    assert lines[-1].endswith("-m devstack.demo --recipe dog-bark")
    plain = subprocess.run(
        ["make", "-n", "--no-print-directory", "demo", *done[:-2]],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "model_export" not in plain
