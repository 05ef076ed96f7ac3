"""Recipes are refused at load with one BUNDLE_INVALID naming the node or field: a cycle, an
unknown op or option, a node feeding an input of the wrong shape, labels that do not fit an
output, a window too short for a node. The shipped recipes load."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from alertfusion.bundle import load_bundle
from alertfusion.errors import BundleError, ReasonCode
from alertfusion.manifest import AudioPreprocessing, Labels
from alertfusion.recipe.schema import Recipe
from alertfusion.recipe.v1 import emergency_recipe, legacy_parts
from tests.recipe_bundles import RECIPES, identity_scalers, recipe_dict, write_bundle

pytestmark = pytest.mark.unit

Edit = Callable[[dict[str, Any]], None]


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.json")), ids=lambda p: p.stem)
def test_shipped_recipes_load(path: Path) -> None:
    recipe = Recipe.load(path)
    assert recipe.name == path.stem
    assert recipe.notes, "a shipped recipe says what it chose"


def test_the_emergency_recipe_is_todays_system() -> None:
    shipped = Recipe.load(RECIPES / "emergency-voice.json")
    canonical = emergency_recipe(AudioPreprocessing(), Labels())
    assert shipped.model_copy(update={"notes": []}) == canonical
    assert legacy_parts(shipped) == (AudioPreprocessing(), Labels())


def test_infant_cry_names_its_raw_nodes_mfcc_and_mel_db() -> None:
    from alertfusion.recipe.graph import check_shapes

    recipe = Recipe.load(RECIPES / "infant-cry.json")
    shapes = check_shapes(recipe)
    assert shapes["mfcc"] == (13, 188) and shapes["mel_db"] == (128, 188)
    assert recipe.features["mfcc_scaled"].op == "affine"


def _set(path: str, value: Any) -> Edit:
    def apply(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = raw
        for part in parents:
            node = node[part]
        node[last] = value

    return apply


def _drop(path: str) -> Edit:
    def apply(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = raw
        for part in parents:
            node = node[part]
        del node[last]

    return apply


#: (recipe, edit, words the message must hold)
BAD_RECIPES: dict[str, tuple[str, Edit, tuple[str, ...]]] = {
    "a cycle": ("infant-cry", _set("features.power.input", "mfcc"), ("cycle", "power")),
    "an unknown op": (
        "infant-cry",
        _set("features.mel", {"op": "gammatone", "input": "power"}),
        ("features.mel", "gammatone"),
    ),
    "an unknown option": (
        "infant-cry",
        _set("features.mel.warp", 1.1),
        ("features.mel", "warp"),
    ),
    "an option value the runtime lacks": (
        "infant-cry",
        _set("features.power.window", "blackman"),
        ("features.power.stft.window",),
    ),
    "a resampler the runtime lacks": (
        "speech-emotion",
        _set("resample_quality", "kaiser_fast"),
        ("resample_quality",),
    ),
    "a missing source": (
        "dog-bark",
        _set("features.colour.input", "mel_dbz"),
        ("features.colour", "mel_dbz"),
    ),
    "mel on a non-stft node": (
        "dog-bark",
        _set("features.mel.input", "waveform"),
        ("features.mel.input", "stft"),
    ),
    "fmax above Nyquist": (
        "speaker-gender",
        _set("features.mel.fmax", 9000.0),
        ("features.mel",),
    ),
    "zscore with eps and clamp": (
        "speaker-gender",
        _set("features.mfcc.eps", 1e-8),
        ("zscore", "exactly one"),
    ),
    "a model input on no node": (
        "dog-bark",
        _set("models.dog.inputs.image.node", "picture"),
        ("models.dog.inputs.image.node", "picture"),
    ),
    "a sigmoid with three labels": (
        "speaker-gender",
        _set(
            "models.gender.labels",
            [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        ),
        ("sigmoid", "two labels"),
    ),
    "duplicate labels": (
        "dog-bark",
        _set("models.dog.labels", [{"name": "a"}, {"name": "a"}, {"name": "b"}]),
        ("unique",),
    ),
    "a fusion of an unknown model": (
        "dog-bark",
        _set("decision.fusion.models", ["cat"]),
        ("decision.fusion.models", "cat"),
    ),
    "an alert label that is not a label": (
        "infant-cry",
        _set("decision.alert_labels", ["sleepy"]),
        ("decision.alert_labels", "sleepy"),
    ),
    "whole aggregate on fixed windows": (
        "dog-bark",
        _set("decision.aggregate", "whole"),
        ("decision.aggregate", "whole"),
    ),
    "max_alert without alert labels": (
        "dog-bark",
        _set("decision.aggregate", "max_alert"),
        ("max_alert", "alert_labels"),
    ),
    "text override without a gate": (
        "infant-cry",
        _set("decision.text_overrides_gate", True),
        ("text_overrides_gate",),
    ),
    "fixed windows without seconds": (
        "dog-bark",
        _drop("windows.seconds"),
        ("windows.seconds",),
    ),
    "a model the decision does not use": (
        "dog-bark",
        _set(
            "models.extra",
            {
                "inputs": {"image": {"node": "image", "layout": "NHWC"}},
                "labels": [{"name": "a"}, {"name": "b"}],
            },
        ),
        ("extra", "not used"),
    ),
    "a gate whose label is not a verdict label": (
        "dog-bark",
        lambda raw: raw.update(
            models={
                **raw["models"],
                "gate": {
                    "inputs": {"image": {"node": "image", "layout": "NHWC"}},
                    "labels": [{"name": "quiet"}, {"name": "bark"}],
                },
            },
            decision={**raw["decision"], "gate": {"model": "gate", "label": "quiet"}},
        ),
        ("decision.gate.label", "quiet"),
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_RECIPES))
def test_bad_recipes_are_refused_naming_the_field(case: str, tmp_path: Path) -> None:
    name, edit, words = BAD_RECIPES[case]
    raw = copy.deepcopy(recipe_dict(name))
    edit(raw)
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(BundleError) as info:
        Recipe.load(path)
    assert info.value.code == ReasonCode.BUNDLE_INVALID
    for word in words:
        assert word in info.value.message, (word, info.value.message)


#: refusals that need numbers: the probe signal at the window lengths the recipe gives
SHORT_WINDOWS: dict[str, tuple[str, Edit, tuple[str, ...]]] = {
    "a delta wider than the shortest window's frames": (
        "speech-emotion",
        _set("features.delta_full.width", 41),
        ("delta", "41"),
    ),
    "an STFT longer than an unpadded window": (
        "speaker-gender",
        lambda raw: (
            raw["windows"].update(tail="score", min_tail_seconds=0.0)
            or raw["features"]["power"].update(input="waveform", n_fft=20_000, hop_length=320)
        ),
        ("reflect padding",),
    ),
    "a layout the node's rank does not fit": (
        "speech-emotion",
        _set("models.svc.inputs.features.layout", "NCHW"),
        ("models.svc.inputs.features", "NCHW"),
    ),
    "a scaler vector of the wrong length": (
        "dog-bark",
        _set("features.image.mean", [0.0] * 7),
        ("features.image", "7 values"),
    ),
}


@pytest.mark.parametrize("case", sorted(SHORT_WINDOWS))
def test_recipes_that_fail_on_their_windows_are_refused(case: str, tmp_path: Path) -> None:
    name, edit, words = SHORT_WINDOWS[case]
    raw = copy.deepcopy(recipe_dict(name))
    edit(raw)
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(BundleError) as info:
        Recipe.load(path)
    assert info.value.code == ReasonCode.BUNDLE_INVALID
    for word in words:
        assert word in info.value.message, (word, info.value.message)


def _bundle(tmp_path: Path, name: str = "speaker-gender") -> Path:
    return write_bundle(identity_scalers(recipe_dict(name)), tmp_path / name)


def _edit_manifest(bundle: Path, edit: Edit) -> None:
    path = bundle / "manifest.json"
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw))


def test_a_test_bundle_loads(tmp_path: Path) -> None:
    bundle = load_bundle(_bundle(tmp_path))
    assert bundle.spec.recipe.name == "speaker-gender" and bundle.legacy is None
    with pytest.raises(BundleError, match="not the emergency-voice system"):
        _ = bundle.manifest


BAD_MANIFESTS: dict[str, tuple[Edit, tuple[str, ...]]] = {
    "a node feeding an input of another shape": (
        _set("models.gender.input_shapes.mfcc", [None, 1, 128, 300]),
        ("models.gender.inputs.mfcc", "301 != 300"),
    ),
    "a node whose size varies into a fixed input": (
        lambda raw: _unpadded(raw["recipe"]),
        ("models.gender.inputs.mfcc", "varies with the window length"),
    ),
    "labels wider than the output": (
        _set("models.gender.output_shape", [None, 2]),
        ("models.gender", "[batch, 1]"),
    ),
    "labels that are not the recipe's": (
        _set("models.gender.labels", ["female", "male"]),
        ("models.gender.labels",),
    ),
    "an input the recipe does not feed": (
        _set("models.gender.input_names", ["image"]),
        ("models.gender.input_names",),
    ),
    "a model the recipe does not have": (
        lambda raw: raw["models"].update(other=raw["models"]["gender"]),
        ("models",),
    ),
    "a transcript model without a tokenizer": (
        lambda raw: _as_transcript_model(raw, "gender"),
        ("models.gender reads the transcript",),
    ),
}


def _unpadded(recipe: dict[str, Any]) -> None:
    """Windows scored as they are, the waveform straight into the STFT: frames vary."""
    recipe["windows"]["tail"] = "score"
    del recipe["features"]["samples"]
    recipe["features"]["power"]["input"] = "waveform"


def _as_transcript_model(raw: dict[str, Any], name: str) -> None:
    raw["recipe"]["models"][name].update(source="transcript", inputs={})
    raw["recipe"]["models"][name]["output"]["kind"] = "logits"
    inputs = ["input_ids", "attention_mask", "token_type_ids"]
    raw["models"][name].update(
        input_names=inputs, input_shapes={i: [None, None] for i in inputs}, output_shape=[None, 2]
    )
    # the fusion still reads the audio through another model
    raw["recipe"]["models"]["audio"] = raw["recipe"]["models"][name] | {
        "source": "features",
        "inputs": {"mfcc": {"node": "mfcc", "layout": "NCHW"}},
    }
    raw["models"]["audio"] = raw["models"][name] | {
        "input_names": ["mfcc"],
        "input_shapes": {"mfcc": [None, 1, 128, 301]},
    }
    raw["recipe"]["decision"]["fusion"] = {"method": "l2norm_softmax", "models": ["audio", name]}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_bad_v2_manifests_are_refused_at_load(case: str, tmp_path: Path) -> None:
    edit, words = BAD_MANIFESTS[case]
    bundle = _bundle(tmp_path)
    _edit_manifest(bundle, edit)
    with pytest.raises(BundleError) as info:
        load_bundle(bundle)
    assert info.value.code == ReasonCode.BUNDLE_INVALID
    for word in words:
        assert word in info.value.message, (word, info.value.message)


def test_an_unfitted_scaler_in_a_bundle_is_refused(tmp_path: Path) -> None:
    bundle = write_bundle(identity_scalers(recipe_dict("infant-cry")), tmp_path / "cry")
    _edit_manifest(bundle, _set("recipe.features.mel_scaled.mean", None))
    with pytest.raises(BundleError, match="features.mel_scaled"):
        load_bundle(bundle)


def test_a_model_file_of_another_shape_is_refused_when_its_session_starts(
    tmp_path: Path,
) -> None:
    """The manifest says [batch, 1, 128, 301]; a file whose graph says otherwise is caught
    where ONNX Runtime reads it, before any verdict."""
    from alertfusion.engine import Engine

    bundle = _bundle(tmp_path)
    other = write_bundle(identity_scalers(recipe_dict("dog-bark")), tmp_path / "dog")
    (bundle / "gender.onnx").write_bytes((other / "dog.onnx").read_bytes())
    from alertfusion.bundle_files import sha256_file

    _edit_manifest(
        bundle,
        lambda raw: raw["models"]["gender"].update(
            sha256=sha256_file(bundle / "gender.onnx"),
            size_bytes=(bundle / "gender.onnx").stat().st_size,
        ),
    )
    engine = Engine.from_bundle(bundle)
    with pytest.raises(BundleError) as info:
        engine.warm_up()
    assert "gender" in info.value.message
