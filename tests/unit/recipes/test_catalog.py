"""alertfusion.catalog: the bundles a deployment serves (MODEL_BUNDLE, MODEL_BUNDLES), each
described from its manifest alone; refusals with their reason codes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from alertfusion import catalog
from alertfusion.errors import AlertFusionError, ReasonCode
from tests.recipe_bundles import identity_scalers, recipe_dict, write_bundle

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def gender_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bundle(
        identity_scalers(recipe_dict("speaker-gender")), tmp_path_factory.mktemp("gender")
    )


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("MODEL_BUNDLE", raising=False)
    monkeypatch.delenv("MODEL_BUNDLES", raising=False)
    catalog.reset_catalog()
    yield
    catalog.reset_catalog()


def test_bundles_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert catalog.configured_bundles() == {}
    monkeypatch.setenv("MODEL_BUNDLE", "build/models/demo")
    monkeypatch.setenv("MODEL_BUNDLES", " infant-cry=build/models/infant-cry, dog=s3://b/dog ,")
    assert catalog.configured_bundles() == {
        "default": "build/models/demo",
        "infant-cry": "build/models/infant-cry",
        "dog": "s3://b/dog",
    }
    assert catalog.check_bundle_name(None) is None
    assert catalog.check_bundle_name("default") is None
    assert catalog.check_bundle_name("dog") == "dog"
    with pytest.raises(AlertFusionError) as refused:
        catalog.check_bundle_name("cat")
    assert refused.value.code is ReasonCode.UNKNOWN_BUNDLE and refused.value.permanent
    assert "default, dog, infant-cry" in refused.value.message


@pytest.mark.parametrize(
    "value", ["no-equals-sign", "=build/x", "Upper=build/x", "x=", "default=build/x"]
)
def test_a_malformed_entry_is_a_config_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("MODEL_BUNDLE", "build/models/demo")
    monkeypatch.setenv("MODEL_BUNDLES", value)
    with pytest.raises(AlertFusionError) as refused:
        catalog.configured_bundles()
    assert refused.value.code is ReasonCode.CONFIG_INVALID


def test_a_bundle_is_described_from_its_manifest(
    monkeypatch: pytest.MonkeyPatch, gender_bundle: Path, tiny_bundle: Path
) -> None:
    monkeypatch.setenv("MODEL_BUNDLE", str(tiny_bundle))
    monkeypatch.setenv("MODEL_BUNDLES", f"gender={gender_bundle}")
    gender = catalog.describe("gender")
    assert gender.recipe == "speaker-gender" and gender.aggregate == "share"
    assert [x.name for x in gender.labels] == ["male", "female"]
    assert [x.display for x in gender.labels] == ["남", "여"]
    assert gender.has_text_model is False and not catalog.has_text_model("gender")
    today = catalog.describe(None)
    assert today.recipe == "emergency-voice" and today.has_text_model
    assert [x.name for x in today.labels][0] == "regular"
    # every model's labels, the gate's too (a v1 gate's labels have no display names)
    assert dict(today.display_names)["alert"] == "alert"
    assert dict(today.display_names)["help"] == "도움요청"
    assert [b.name for b in catalog.describe_all()] == ["default", "gender"]


def test_an_unreadable_manifest_is_bundle_not_found(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MODEL_BUNDLE", str(tmp_path / "nothing"))
    with pytest.raises(AlertFusionError) as refused:
        catalog.describe(None)
    assert refused.value.code is ReasonCode.BUNDLE_NOT_FOUND


def test_without_any_bundle_configured_todays_system_is_assumed() -> None:
    assert catalog.has_text_model(None) is True


def test_a_starter_without_the_baked_default_knows_it_by_flag_and_the_named_by_manifest(
    monkeypatch: pytest.MonkeyPatch, gender_bundle: Path
) -> None:
    """As deployed: the starter has no copy of a baked default bundle (BUNDLE_TEXT_MODEL
    says what it needs) but reads the manifests of the named S3 bundles (MODEL_BUNDLES)."""
    monkeypatch.delenv("MODEL_BUNDLE", raising=False)
    monkeypatch.setenv("MODEL_BUNDLES", f"gender={gender_bundle}")
    monkeypatch.setenv(catalog.TEXT_MODEL_ENV, "false")
    assert catalog.has_text_model(None) is False
    assert catalog.has_text_model("default") is False
    assert catalog.model_transcribes(None) is False
    assert catalog.has_text_model("gender") is False
    monkeypatch.setenv(catalog.TEXT_MODEL_ENV, "true")
    assert catalog.has_text_model(None) is True
    assert catalog.has_text_model("gender") is False  # its manifest, not the flag
    with pytest.raises(AlertFusionError) as unknown:
        catalog.has_text_model("dog-bark")
    assert unknown.value.code is ReasonCode.UNKNOWN_BUNDLE
