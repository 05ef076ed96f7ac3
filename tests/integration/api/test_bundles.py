"""Several bundles behind one API: GET /bundles (labels as data), /readyz on any recipe, and
`bundle` on /predict, /predict_s3 and /uploads (422 UNKNOWN_BUNDLE for a name not served)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from alertfusion.catalog import reset_catalog
from alertfusion.engine import reset_engine
from alertfusion.settings import engine_settings
from tests.integration.api.conftest import Api, sample
from tests.recipe_bundles import identity_scalers, recipe_dict, write_bundle

pytestmark = pytest.mark.integration

EMERGENCY_LABELS = ["regular", "help", "robbery", "sexual", "theft", "violence"]


@pytest.fixture(scope="module")
def infant_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bundle(
        identity_scalers(recipe_dict("infant-cry")), tmp_path_factory.mktemp("infant")
    )


def _serve(monkeypatch: pytest.MonkeyPatch, default: Path, others: str | None) -> None:
    monkeypatch.setenv("MODEL_BUNDLE", str(default))
    if others is None:
        monkeypatch.delenv("MODEL_BUNDLES", raising=False)
    else:
        monkeypatch.setenv("MODEL_BUNDLES", others)
    monkeypatch.setenv("SELFCHECK", "false")
    engine_settings.cache_clear()
    reset_catalog()
    reset_engine()


@pytest.fixture
def two(
    monkeypatch: pytest.MonkeyPatch,
    make_api: Callable[..., Api],
    tiny_bundle: Path,
    infant_bundle: Path,
) -> Iterator[Api]:
    _serve(monkeypatch, tiny_bundle, f"infant-cry={infant_bundle}")
    yield make_api()
    engine_settings.cache_clear()
    reset_catalog()
    reset_engine()


def test_bundles_lists_each_bundle_with_its_labels(two: Api) -> None:
    response = two.client.get("/bundles")
    assert response.status_code == 200, response.text
    found = {b["name"]: b for b in response.json()["bundles"]}
    assert set(found) == {"default", "infant-cry"}
    default, infant = found["default"], found["infant-cry"]
    assert default["default"] is True and infant["default"] is False
    assert default["recipe"] == "emergency-voice" and default["has_text_model"] is True
    assert default["transcript_source"] == "aws_transcribe"
    assert [x["name"] for x in default["labels"]] == EMERGENCY_LABELS
    assert default["labels"][1]["display"] == "도움요청"
    assert set(default["alert_labels"]) == set(EMERGENCY_LABELS) - {"regular"}
    assert infant["recipe"] == "infant-cry" and infant["has_text_model"] is False
    assert infant["labels"] == [
        {"name": "hungry", "display": "배고픔"},
        {"name": "other", "display": "그외"},
    ]
    assert infant["alert_labels"] == ["hungry"] and infant["aggregate"] == "mean"


def test_predict_with_a_named_bundle_answers_in_its_labels(two: Api) -> None:
    wav = sample("ko-help-16k.wav")
    files = {"audio_file": ("a.wav", wav, "audio/wav")}
    body = two.client.post(
        "/predict", files=files, data={"bundle": "infant-cry", "text_input": "도와주세요"}
    ).json()
    assert body["model"]["recipe"] == "infant-cry", body
    assert set(body["probabilities"]) == {"hungry", "other"}
    assert body["label_ko"] == {"hungry": "배고픔", "other": "그외"}[body["label"]]
    assert body["is_emergency"] == (body["label"] == "hungry")
    assert body["text"]["skipped_reason"] == "NO_TEXT_MODEL"
    assert body["combined_label"] == body["label"]  # the legacy keys too
    default = two.client.post("/predict", files=files).json()
    assert default["model"]["recipe"] == "emergency-voice"
    assert set(default["probabilities"] or default["audio"]["gate"]["probabilities"]) <= set(
        EMERGENCY_LABELS
    ) | {"alert"}
    same = two.client.post("/predict", files=files, data={"bundle": "default"}).json()
    assert same["label"] == default["label"]


def test_an_unknown_bundle_is_a_typed_422(two: Api) -> None:
    files = {"audio_file": ("a.wav", sample("ko-help-16k.wav"), "audio/wav")}
    response = two.client.post("/predict", files=files, data={"bundle": "dog-bark"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "UNKNOWN_BUNDLE"
    assert "dog-bark" in error["message"] and "infant-cry" in error["message"]
    upload = two.client.post("/uploads", json={"filename": "a.wav", "bundle": "dog-bark"})
    assert upload.status_code == 422 and upload.json()["error"]["code"] == "UNKNOWN_BUNDLE"
    s3 = two.client.post("/predict_s3", json={"s3_key": "uploads/x.wav", "bundle": "nope"})
    assert s3.status_code == 422 and s3.json()["error"]["code"] == "UNKNOWN_BUNDLE"
    malformed = two.client.post("/uploads", json={"filename": "a.wav", "bundle": "Not A Name"})
    assert malformed.status_code == 422
    assert malformed.json()["error"]["code"] == "INVALID_INPUT"


def test_an_upload_names_its_bundle_on_the_job(two: Api) -> None:
    created = two.client.post("/uploads", json={"filename": "a.wav", "bundle": "infant-cry"})
    assert created.status_code == 201, created.text
    job = two.client.get(f"/jobs/{created.json()['job_id']}").json()
    assert job["bundle"] == "infant-cry"
    plain = two.client.post("/uploads", json={"filename": "a.wav"}).json()
    assert two.client.get(f"/jobs/{plain['job_id']}").json()["bundle"] is None


def test_readyz_serves_a_bundle_of_another_recipe(
    monkeypatch: pytest.MonkeyPatch, make_api: Callable[..., Api], infant_bundle: Path
) -> None:
    _serve(monkeypatch, infant_bundle, None)
    try:
        response = make_api().client.get("/readyz")
    finally:
        engine_settings.cache_clear()
        reset_catalog()
        reset_engine()
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["recipe"] == "infant-cry" and body["gate"] == "none"
    assert [x["name"] for x in body["labels"]] == ["hungry", "other"]
    assert body["alert_labels"] == ["hungry"]


def test_the_schema_has_labels_as_data_and_the_bundle_field(two: Api) -> None:
    schema: dict[str, Any] = two.client.get("/openapi.json").json()
    parts = schema["components"]["schemas"]
    assert "enum" not in parts["PredictResponse"]["properties"]["label"]
    assert "bundle" in parts["UploadRequest"]["properties"]
    assert "UNKNOWN_BUNDLE" in str(schema["paths"]["/uploads"]["post"]["responses"]["422"])
    assert "/bundles" in schema["paths"]


@pytest.fixture(scope="module")
def every_recipe(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.recipe_bundles import GENERIC_RECIPES

    return {
        name: write_bundle(identity_scalers(recipe_dict(name)), tmp_path_factory.mktemp(name))
        for name in GENERIC_RECIPES
    }


def test_every_recipe_classifies_the_samples_through_the_api(
    monkeypatch: pytest.MonkeyPatch,
    make_api: Callable[..., Api],
    tiny_bundle: Path,
    every_recipe: dict[str, Path],
) -> None:
    _serve(monkeypatch, tiny_bundle, ",".join(f"{n}={p}" for n, p in every_recipe.items()))
    try:
        client = make_api().client
        listed = {b["name"]: b for b in client.get("/bundles").json()["bundles"]}
        for name in every_recipe:
            labels = {x["name"]: x["display"] for x in listed[name]["labels"]}
            for wav in ("ko-help-16k.wav", "ko-regular-22k.wav"):
                files = {"audio_file": (wav, sample(wav), "audio/wav")}
                response = client.post("/predict", files=files, data={"bundle": name})
                assert response.status_code == 200, (name, response.text)
                body = response.json()
                assert body["model"]["recipe"] == listed[name]["recipe"], name
                assert body["label"] in labels and body["label_ko"] == labels[body["label"]]
                assert set(body["probabilities"]) == set(labels), name
                assert body["is_emergency"] == (body["label"] in listed[name]["alert_labels"])
    finally:
        engine_settings.cache_clear()
        reset_catalog()
        reset_engine()


def test_bundles_says_which_bundle_transcribes_itself(
    monkeypatch: pytest.MonkeyPatch,
    make_api: Callable[..., Api],
    tiny_bundle: Path,
    offline_bundle: Path,
) -> None:
    _serve(monkeypatch, tiny_bundle, f"offline={offline_bundle}")
    try:
        response = make_api().client.get("/bundles")
        assert response.status_code == 200, response.text
        found = {b["name"]: b["transcript_source"] for b in response.json()["bundles"]}
        assert found == {"default": "aws_transcribe", "offline": "model"}
    finally:
        engine_settings.cache_clear()
        reset_catalog()
        reset_engine()
