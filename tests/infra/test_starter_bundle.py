"""The starter (no bundle in its package) is told whether the baked bundle's recipe has a text
model (BUNDLE_TEXT_MODEL), so that it never starts Transcribe for one without; and the core
library reads that flag (alertfusion.catalog)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alertfusion import catalog
from alertfusion.errors import AlertFusionError, ReasonCode
from infra.config import InfraConfig
from infra.constructs.function_support import starter_environment
from tests.recipe_bundles import identity_scalers, recipe_dict, write_bundle

pytestmark = pytest.mark.infra


def _config(bundle: str) -> InfraConfig:
    # the bundle's location check (inside the repository) is not what is tested here
    return InfraConfig.model_construct(bundle=bundle)


def test_the_starter_learns_the_baked_bundles_text_model(tmp_path: Path, tiny_bundle: Path) -> None:
    infant = write_bundle(identity_scalers(recipe_dict("infant-cry")), tmp_path / "infant")
    assert starter_environment(_config(str(infant))) == {"BUNDLE_TEXT_MODEL": "false"}
    assert starter_environment(_config(str(tiny_bundle))) == {"BUNDLE_TEXT_MODEL": "true"}
    # an S3 bundle is not read at synth: the starter reads its manifest (MODEL_BUNDLE)
    s3 = "s3://models-example/alertfusion/v1/"
    assert starter_environment(_config(s3)) == {"MODEL_BUNDLE": s3}
    # a directory that holds no manifest: nothing said (the starter starts Transcribe)
    odd = tmp_path / "placeholder"
    odd.mkdir()
    (odd / "manifest.json").write_text(json.dumps({"placeholder": True}))
    assert starter_environment(_config(str(odd))) == {}


def test_the_core_library_reads_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODEL_BUNDLE", raising=False)
    monkeypatch.delenv("MODEL_BUNDLES", raising=False)
    monkeypatch.delenv("BUNDLE_TEXT_MODEL", raising=False)
    assert catalog.has_text_model(None) is True
    monkeypatch.setenv("BUNDLE_TEXT_MODEL", "false")
    assert catalog.has_text_model(None) is False
    monkeypatch.setenv("BUNDLE_TEXT_MODEL", "maybe")
    with pytest.raises(AlertFusionError) as refused:
        catalog.has_text_model(None)
    assert refused.value.code is ReasonCode.CONFIG_INVALID
