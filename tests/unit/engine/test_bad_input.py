"""Bad input through Engine.classify: the corpus's reason codes, and properties on any bytes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from alertfusion.engine import Engine, Gate
from alertfusion.errors import PERMANENT_INPUT_REASONS, AlertFusionError, AudioError
from alertfusion.result import ClassificationResult
from tests.corpus.bad_audio import BadAudioCase, bad_audio_cases
from tests.unit.audio.test_properties import mutated, seed_files
from tests.unit.engine.conftest import HELP_TEXT

pytestmark = pytest.mark.unit

PROPERTY_SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("case", bad_audio_cases(), ids=lambda c: c.name)
def test_corpus_case_gets_its_reason_through_the_engine(engine: Engine, case: BadAudioCase) -> None:
    with pytest.raises(AudioError) as err:
        engine.classify(case.data, filename=case.name, text=HELP_TEXT, gate="none")
    assert err.value.code == case.expected, err.value.message


def _distributions(result: ClassificationResult) -> list[dict[str, float]]:
    found = [result.probabilities, result.audio.probabilities, result.text.probabilities]
    if result.audio.gate is not None:
        found.append(result.audio.gate.probabilities)
    for w in result.windows:
        found += [w.probabilities, w.audio_probabilities]
        if w.gate is not None:
            found.append(w.gate.probabilities)
    return [d for d in found if d is not None]


def check(engine: Engine, data: bytes, text: str | None, gate: Gate) -> None:
    """The property: a valid result whose every probability vector is a distribution, or a
    typed error with an input reason; never another exception, never a default verdict."""
    try:
        result = engine.classify(data, text=text, gate=gate)
    except AlertFusionError as exc:
        assert exc.code in PERMANENT_INPUT_REASONS, exc
        event(f"refused: {exc.code}")
        return
    event(f"classified: {result.decided_by}")
    ClassificationResult.model_validate_json(result.model_dump_json())
    dists = _distributions(result)
    if result.decided_by != "gate":
        assert result.probabilities is not None
    for dist in dists:
        values = np.array(list(dist.values()))
        assert np.isfinite(values).all()
        assert ((values >= 0) & (values <= 1)).all()
        assert abs(values.sum() - 1) <= 1e-5
    assert 0 <= result.emergency_probability <= 1
    assert len(result.windows) >= 1 and result.selected_window < len(result.windows)


@PROPERTY_SETTINGS
@given(data=st.binary(max_size=4_000), text=st.none() | st.text(max_size=80))
def test_arbitrary_bytes(engine: Engine, data: bytes, text: str | None) -> None:
    check(engine, data, text, "none")


@PROPERTY_SETTINGS
@given(
    data=mutated(),
    text=st.none() | st.text(max_size=200),
    gate=st.sampled_from(["binary", "none"]),
)
def test_mutated_real_files(engine: Engine, data: bytes, text: str | None, gate: Gate) -> None:
    check(engine, data, text, gate)


def test_every_real_seed_file_classifies(engine: Engine) -> None:
    for name, data in seed_files().items():
        result = engine.classify(data, text=HELP_TEXT, gate="none")
        assert result.decided_by == "fusion", name


@st.composite
def signals(draw: st.DrawFn) -> bytes:
    """Valid WAV files of any content: silence, DC, clipped noise, tones, impulses, at any
    rate, level and length the service accepts."""
    from tests.corpus.bad_audio import float32_wav

    rate = draw(st.sampled_from([8_000, 16_000, 22_050, 44_100, 48_000]))
    n = round(draw(st.floats(0.5, 6.0)) * rate)
    kind = draw(st.sampled_from(["silence", "dc", "noise", "tone", "impulse", "square"]))
    level = draw(st.sampled_from([0.0, 1e-30, 1e-6, 0.5, 1.0, 999.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    t = np.arange(n) / rate
    y = {
        "silence": np.zeros(n),
        "dc": np.ones(n),
        "noise": rng.standard_normal(n),
        "tone": np.sin(2 * np.pi * draw(st.floats(20, rate / 2 - 1)) * t),
        "impulse": (np.arange(n) == n // 2).astype(np.float64),
        "square": np.sign(np.sin(2 * np.pi * 3 * t)),
    }[kind]
    return float32_wav(np.clip(level * y, -999.0, 999.0), rate=rate)


@PROPERTY_SETTINGS
@given(data=signals(), text=st.none() | st.text(max_size=100))
def test_any_valid_signal(engine: Engine, data: bytes, text: str | None) -> None:
    check(engine, data, text, "none")
