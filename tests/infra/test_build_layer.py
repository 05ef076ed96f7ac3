"""The zip functions' core layer: built from the repository's files, without docker."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from infra.build_layer import (
    CORE_PACKAGE_DIR,
    LAMBDA_RUNTIME_DISTRIBUTIONS,
    missing_from_layers,
    pinned_versions,
    powertools_layer_distributions,
)
from infra.config import powertools_version_from_requirements
from infra.constructs.layers import powertools_layer_parameter

pytestmark = pytest.mark.infra


def _package_files(root: Path) -> set[str]:
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def test_layer_holds_the_core_package_under_python(core_layer_dir: Path) -> None:
    package = core_layer_dir / "python" / "alertfusion"
    assert _package_files(package) == _package_files(CORE_PACKAGE_DIR)
    assert not list(core_layer_dir.rglob("__pycache__"))
    assert {p.name for p in core_layer_dir.iterdir()} == {"python"}


def test_layer_files_are_readable_by_the_lambda_user(core_layer_dir: Path) -> None:
    for path in core_layer_dir.rglob("*"):
        mode = path.stat().st_mode
        assert mode & stat.S_IROTH, path
        assert not mode & stat.S_IWOTH, path


def test_powertools_layer_brings_pydantic_v2_and_settings_but_not_the_sdk() -> None:
    provided = powertools_layer_distributions()
    assert {
        "aws-lambda-powertools",
        "pydantic",
        "pydantic-core",
        "pydantic-settings",
        "python-dotenv",
        "typing-inspection",
        "aws-xray-sdk",
    } <= provided
    assert not provided & LAMBDA_RUNTIME_DISTRIBUTIONS  # stripped: the runtime has boto3
    assert pinned_versions()["pydantic"].startswith("2.")


def test_at_the_pinned_versions_the_core_layer_needs_nothing_from_pypi() -> None:
    assert missing_from_layers() == []


def test_the_powertools_layer_is_the_version_requirements_pin() -> None:
    version = powertools_version_from_requirements()
    assert version == pinned_versions()["aws-lambda-powertools"]
    assert powertools_layer_parameter(version) == (
        f"/aws/service/powertools/python/x86_64/python3.12/{version}"
    )
    assert powertools_layer_parameter(version, "arm64") == (
        f"/aws/service/powertools/python/arm64/python3.12/{version}"
    )
