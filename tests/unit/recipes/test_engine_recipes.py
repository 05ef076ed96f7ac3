"""The engine on every shipped recipe (test bundles whose models are onnx.helper graphs): the
decision's aggregates, tail policies on recordings shorter than a window, the result's labels
from the recipe, the CLI's classify and features commands."""

from __future__ import annotations

import io
import json
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from alertfusion.cli import EXIT_BAD_INPUT, EXIT_OK, main
from alertfusion.engine import Engine
from alertfusion.errors import AudioError, ReasonCode
from alertfusion.fusion import softmax
from alertfusion.recipe.extract import SKIPPED_KEY, WINDOWS_KEY
from tests.conftest import SAMPLES
from tests.recipe_bundles import (
    GENERIC_RECIPES,
    RECIPES,
    identity_scalers,
    recipe_dict,
    write_bundle,
)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("recipe-bundles")
    return {n: write_bundle(identity_scalers(recipe_dict(n)), root / n) for n in GENERIC_RECIPES}


def _wav(seconds: float, rate: int = 16_000, seed: int = 0) -> bytes:
    n = round(seconds * rate)
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    y = 0.3 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(n)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((y * 32767).astype("<i2").tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("name", GENERIC_RECIPES)
def test_every_recipe_classifies_the_samples(bundles: dict[str, Path], name: str) -> None:
    engine = Engine.from_bundle(bundles[name])
    recipe = engine.spec.recipe
    names = [label.name for label in recipe.labels]
    displays = {label.name: label.shown for label in recipe.labels}
    for path in sorted(SAMPLES.glob("*.wav")):
        r = engine.classify(path)
        assert r.label in names and r.label_ko == displays[r.label]
        assert r.is_emergency == (r.label in recipe.decision.alert_labels)
        assert r.model.recipe == name and r.model.manifest_schema_version == 2
        assert r.text.status == "skipped" and r.text.skipped_reason == "NO_TEXT_MODEL"
        assert r.probabilities is not None
        assert sum(r.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert all(0.0 <= w.emergency_probability <= 1.0 for w in r.windows)


def test_mean_aggregate_is_the_mean_of_the_windows(bundles: dict[str, Path]) -> None:
    engine = Engine.from_bundle(bundles["infant-cry"])
    r = engine.classify(SAMPLES / "ko-violence-long-16k.wav")
    assert r.aggregation == "mean" and len(r.windows) > 1
    rows = np.array([[(w.probabilities or {})[k] for k in ("hungry", "other")] for w in r.windows])
    assert r.probabilities is not None
    assert [r.probabilities["hungry"], r.probabilities["other"]] == pytest.approx(
        rows.mean(axis=0).tolist(), abs=1e-12
    )
    assert r.label == ("hungry" if rows.mean(axis=0)[0] > rows.mean(axis=0)[1] else "other")
    assert r.emergency_probability == pytest.approx(r.probabilities["hungry"])


def test_share_aggregate_counts_each_windows_time(bundles: dict[str, Path]) -> None:
    engine = Engine.from_bundle(bundles["speaker-gender"])
    r = engine.classify(SAMPLES / "ko-violence-long-16k.wav")
    assert r.aggregation == "share" and r.shares is not None
    time = {"male": 0.0, "female": 0.0}
    for w in r.windows:
        time[w.label] += w.end_s - w.start_s
    total = sum(time.values())
    assert r.shares == pytest.approx({k: v / total for k, v in time.items()})
    assert r.label == max(r.shares, key=lambda k: r.shares[k])  # type: ignore[index]
    assert not r.is_emergency


def test_a_sigmoid_output_is_two_label_probabilities(bundles: dict[str, Path]) -> None:
    engine = Engine.from_bundle(bundles["speaker-gender"])
    r = engine.classify(SAMPLES / "ko-help-16k.wav")
    w = r.windows[0]
    assert w.audio_logits is not None and len(w.audio_logits) == 1
    p = w.audio_logits[0]
    assert w.audio_probabilities == pytest.approx({"male": 1 - p, "female": p})


def test_whole_aggregate_is_one_window(bundles: dict[str, Path]) -> None:
    engine = Engine.from_bundle(bundles["speech-emotion"])
    r = engine.classify(SAMPLES / "ko-violence-long-16k.wav")
    assert r.aggregation == "whole" and len(r.windows) == 1
    assert r.windows[0].end_s == pytest.approx(r.duration_s)


@pytest.mark.parametrize("name", GENERIC_RECIPES)
@pytest.mark.parametrize("seconds", [0.5, 0.8, 2.0])
def test_audio_shorter_than_a_window_follows_the_tail_policy(
    bundles: dict[str, Path], name: str, seconds: float
) -> None:
    """Never an exception: padded recipes pad the one short window to a whole one (their fixed
    frame counts hold), whole-clip recipes run on what there is."""
    engine = Engine.from_bundle(bundles[name])
    r = engine.classify(_wav(seconds))
    assert len(r.windows) == 1
    assert r.windows[0].end_s == pytest.approx(seconds, abs=1e-3)


def test_a_short_tail_is_dropped_and_said(bundles: dict[str, Path]) -> None:
    """infant-cry: 6 s windows, a tail under 1 s is dropped unless it is the only window."""
    engine = Engine.from_bundle(bundles["infant-cry"])
    r = engine.classify(_wav(12.5))
    assert len(r.windows) == 2
    assert "0.50 s" in r.explanation


def test_too_short_for_the_service_is_still_a_typed_error(bundles: dict[str, Path]) -> None:
    engine = Engine.from_bundle(bundles["dog-bark"])
    with pytest.raises(AudioError) as info:
        engine.classify(_wav(0.3))
    assert info.value.code == ReasonCode.TOO_SHORT


def test_a_gate_stops_windows_on_a_generic_recipe(tmp_path: Path) -> None:
    """dog-bark with a gate model whose 'quiet' label also names a verdict label: a window it
    stops takes 'quiet' and runs no other model; gate none runs every model."""
    raw: dict[str, Any] = identity_scalers(recipe_dict("dog-bark"))
    labels = [{"name": "quiet"}, *raw["models"]["dog"]["labels"][1:]]
    raw["models"]["dog"]["labels"] = labels
    raw["models"]["gate"] = {
        "inputs": {"image": {"node": "image", "layout": "NHWC"}},
        "output": {"name": "logits", "kind": "logits"},
        "labels": [{"name": "quiet"}, {"name": "bark"}],
    }
    raw["decision"] = {
        "gate": {"model": "gate", "label": "quiet"},
        "fusion": {"method": "single", "models": ["dog"]},
        "aggregate": "max_alert",
        "alert_labels": ["state_1", "state_2"],
    }
    seen_stop = seen_pass = False
    # the seeded gate of seed 3 stops the samples' windows, seed 4's passes them
    engines = [Engine.from_bundle(write_bundle(raw, tmp_path / f"g{k}", seed=k)) for k in (3, 4)]
    for engine, path in ((e, p) for e in engines for p in sorted(SAMPLES.glob("*.wav"))):
        r = engine.classify(path)
        every = engine.classify(path, gate="none")
        for w, x in zip(r.windows, every.windows, strict=True):
            assert w.gate is not None
            if w.gate.label == "quiet":
                seen_stop = True
                assert (w.decided_by, w.label, w.probabilities) == ("gate", "quiet", None)
                p_quiet = softmax(np.array(w.gate.logits))[0]
                assert w.emergency_probability == pytest.approx(1 - p_quiet)
            else:
                seen_pass = True
                assert w.probabilities == x.probabilities
            assert x.decided_by != "gate"
    assert seen_stop and seen_pass, (seen_stop, seen_pass)


def test_cli_classifies_with_a_recipe_bundle(bundles: dict[str, Path], capsys: Any) -> None:
    code = main(["classify", str(SAMPLES / "ko-help-16k.wav"), "--bundle",
                 str(bundles["speaker-gender"]), "--json", "--quiet"])  # fmt: skip
    assert code == EXIT_OK
    out = json.loads(capsys.readouterr().out)
    assert out["label"] in ("male", "female") and out["model"]["recipe"] == "speaker-gender"


def test_cli_features_writes_every_node_per_window(
    bundles: dict[str, Path], tmp_path: Path, capsys: Any
) -> None:
    out = tmp_path / "f.npz"
    args = ["features", str(SAMPLES / "ko-violence-long-16k.wav"), "--bundle",
            str(bundles["infant-cry"]), "--out", str(out)]  # fmt: skip
    assert main(args) == EXIT_OK
    engine = Engine.from_bundle(bundles["infant-cry"])
    with np.load(out) as data:
        arrays = {k: data[k] for k in data.files}
    windows = arrays[WINDOWS_KEY]
    assert set(engine.spec.recipe.features) <= set(arrays)
    assert arrays["mfcc"].shape == (len(windows), 13, 188)
    assert arrays["mel_db"].shape == (len(windows), 128, 188)
    assert arrays["mfcc_scaled"].shape == (len(windows), 13, 188)
    assert "mfcc" in capsys.readouterr().out


def test_cli_features_from_a_recipe_leaves_unfitted_scalers_out(tmp_path: Path) -> None:
    out = tmp_path / "f.npz"
    args = ["features", str(SAMPLES / "ko-help-16k.wav"), "--recipe",
            str(RECIPES / "infant-cry.json"), "--out", str(out)]  # fmt: skip
    assert main(args) == EXIT_OK
    with np.load(out) as data:
        assert "mfcc" in data.files and "mfcc_scaled" not in data.files
        assert sorted(data[SKIPPED_KEY].tolist()) == ["mel_scaled", "mfcc_scaled"]


def test_cli_features_marks_ragged_nodes(tmp_path: Path) -> None:
    """emergency-voice scores a shorter last window as it is: its STFT has fewer frames."""
    out = tmp_path / "f.npz"
    audio = tmp_path / "a.wav"
    audio.write_bytes(_wav(7.3))
    args = ["features", str(audio), "--recipe", str(RECIPES / "emergency-voice.json"),
            "--out", str(out), "--nodes", "stft", "image"]  # fmt: skip
    assert main(args) == EXIT_OK
    with np.load(out) as data:
        shapes = data["stft:shape"]
        assert shapes[0].tolist() == [513, 216] and shapes[-1][1] < 216
        assert np.isnan(data["stft"][-1][:, -1]).all()
        assert data["image"].shape[1:] == (192, 64) and "image:shape" not in data.files


def test_cli_features_refuses_bad_audio(bundles: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "x.wav"
    bad.write_bytes(b"not audio at all")
    args = ["features", str(bad), "--bundle", str(bundles["dog-bark"]), "--out",
            str(tmp_path / "o.npz")]  # fmt: skip
    assert main(args) == EXIT_BAD_INPUT
