"""Today's system as manifest v2: the same files with a v2 manifest carrying the
emergency-voice recipe give bit for bit what the v1 bundle gives, on every sample and fixture;
v1 bundles load unchanged (mapped onto v2); the off-by-default text override of the gate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from alertfusion.bundle import load_bundle
from alertfusion.engine import Engine
from alertfusion.errors import AlertFusionError
from alertfusion.manifest import Manifest
from alertfusion.manifest_v2 import ManifestV2, from_v1
from alertfusion.recipe.schema import Recipe
from tests.conftest import SAMPLES
from tests.recipe_bundles import RECIPES
from tests.unit.audio.helpers import FIXTURE_FILES

pytestmark = pytest.mark.unit

TRANSCRIPTS: dict[str, str] = json.loads((SAMPLES / "transcripts.json").read_text("utf-8"))


def as_v2(v1: Path, out: Path, *, edit: Any = None) -> Path:
    """A copy of a v1 bundle whose manifest is v2 with recipes/emergency-voice.json."""
    shutil.copytree(v1, out)
    spec = from_v1(Manifest.load(v1 / "manifest.json"))
    raw = spec.model_dump(mode="json")
    raw["recipe"] = json.loads((RECIPES / "emergency-voice.json").read_text("utf-8"))
    if edit is not None:
        edit(raw)
    ManifestV2.model_validate(raw).dump(out / "manifest.json")
    return out


@pytest.fixture(scope="module")
def v2_bundle(tiny_bundle_int8: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return as_v2(tiny_bundle_int8, tmp_path_factory.mktemp("v2") / "bundle")


def test_a_v1_bundle_loads_as_v2_and_keeps_its_manifest(tiny_bundle_int8: Path) -> None:
    bundle = load_bundle(tiny_bundle_int8)
    assert bundle.schema_version == 1
    assert bundle.manifest == Manifest.load(tiny_bundle_int8 / "manifest.json")
    assert bundle.spec.recipe.name == "emergency-voice"
    assert sorted(bundle.spec.models) == ["audio_binary", "audio_multiclass", "text"]
    assert bundle.spec.files() == bundle.manifest.files()


def test_the_v2_emergency_bundle_is_recognised(v2_bundle: Path, tiny_bundle_int8: Path) -> None:
    bundle = load_bundle(v2_bundle)
    assert bundle.schema_version == 2 and bundle.legacy is not None
    v1 = Manifest.load(tiny_bundle_int8 / "manifest.json")
    assert (bundle.manifest.audio, bundle.manifest.labels) == (v1.audio, v1.labels)
    assert bundle.manifest.text == v1.text and bundle.manifest.golden == v1.golden


def _comparable(result: Any) -> dict[str, Any]:
    out: dict[str, Any] = result.model_dump(mode="json")
    del out["timings"]
    out["model"].pop("manifest_schema_version")
    return out


@pytest.mark.parametrize("gate", ["binary", "none"])
def test_v1_and_v2_give_the_same_results_bit_for_bit(
    tiny_bundle_int8: Path, v2_bundle: Path, gate: str
) -> None:
    v1 = Engine.from_bundle(tiny_bundle_int8, gate=gate)  # type: ignore[arg-type]
    v2 = Engine.from_bundle(v2_bundle, gate=gate)  # type: ignore[arg-type]
    compared = 0
    for path in FIXTURE_FILES:
        for text in (None, TRANSCRIPTS.get(path.name, "도와주세요 살려주세요")):
            try:
                want = v1.classify(path, text=text)
            except AlertFusionError as exc:
                with pytest.raises(type(exc)) as info:
                    v2.classify(path, text=text)
                assert info.value.code == exc.code
                continue
            got = v2.classify(path, text=text)
            assert _comparable(got) == _comparable(want), path.name
            assert got.model.manifest_schema_version == 2
            compared += 1
    assert compared >= len(FIXTURE_FILES)
    v1.close()
    v2.close()


def test_a_changed_option_leaves_the_optimised_path(tiny_bundle_int8: Path, tmp_path: Path) -> None:
    """The same graph but a Hamming window is not today's system: it runs the generic path
    (and computes what it says)."""

    def hamming(raw: dict[str, Any]) -> None:
        for name in ("stft", "power"):
            raw["recipe"]["features"][name]["window"] = "hamming"

    bundle = load_bundle(as_v2(tiny_bundle_int8, tmp_path / "b", edit=hamming))
    assert bundle.legacy is None
    engine = Engine(bundle)
    result = engine.classify(SAMPLES / "ko-help-16k.wav", text="도와주세요")
    assert result.model.recipe == "emergency-voice"
    assert result.label in [label.name for label in bundle.spec.recipe.labels]


def test_the_generic_path_of_the_emergency_recipe_agrees_with_the_optimised_one(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    """The emergency recipe run through the generic graph, models and decision (recognition
    switched off by spelling out a default: win_length = n_fft) gives the optimised path's
    verdicts."""

    def spelled_out(raw: dict[str, Any]) -> None:
        for name in ("stft", "power"):
            raw["recipe"]["features"][name]["win_length"] = 1024

    generic = Engine(load_bundle(as_v2(tiny_bundle, tmp_path / "g", edit=spelled_out)))
    assert generic.bundle.legacy is None
    fast = Engine.from_bundle(tiny_bundle)
    for path in sorted(SAMPLES.glob("*.wav")):
        for text in (None, TRANSCRIPTS.get(path.name)):
            a, b = fast.classify(path, text=text), generic.classify(path, text=text)
            assert (a.label, a.decided_by, a.selected_window) == (
                b.label,
                b.decided_by,
                b.selected_window,
            )
            assert a.emergency_probability == pytest.approx(b.emergency_probability, abs=1e-9)
            assert [w.label for w in a.windows] == [w.label for w in b.windows]


def test_text_overrides_gate_is_off_in_the_shipped_recipe() -> None:
    recipe = Recipe.load(RECIPES / "emergency-voice.json")
    assert recipe.decision.text_overrides_gate is False


def test_text_overrides_gate_sends_stopped_windows_to_fusion(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    """With the option on, a window the gate stopped goes to fusion when the text model reads
    an alert; off (the original rule) it stays the gate's. Cases come from the gate-off run:
    windows the gate calls regular, with a transcript the text model calls an alert."""

    def override(raw: dict[str, Any]) -> None:
        raw["recipe"]["decision"]["text_overrides_gate"] = True

    on = Engine(load_bundle(as_v2(tiny_bundle, tmp_path / "on", edit=override)))
    assert on.bundle.legacy is not None  # still today's system, on its optimised path
    off = Engine.from_bundle(tiny_bundle)
    texts = [*TRANSCRIPTS.values(), "도와주세요", "지갑을 훔쳐갔어요", "오늘 날씨가 좋네요"]
    cases = 0
    for path in sorted(SAMPLES.glob("*.wav")):
        for text in texts:
            every = off.classify(path, text=text, gate="none")
            stopped = [w.index for w in every.windows if w.gate and w.gate.label == "regular"]
            if not stopped:
                continue
            text_alert = every.text.label not in (None, "regular")
            result_on, result_off = on.classify(path, text=text), off.classify(path, text=text)
            for i in stopped:
                assert result_off.windows[i].decided_by == "gate"
                if text_alert:
                    cases += 1
                    assert result_on.windows[i].decided_by == "fusion"
                    assert result_on.windows[i].probabilities == every.windows[i].probabilities
                else:
                    assert result_on.windows[i].decided_by == "gate"
    assert cases, "no sample window the gate stops with a transcript the text model calls alert"
