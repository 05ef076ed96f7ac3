"""Engine.classify on the tiny fp32 bundle: windows, gate, text handling, the result's shape."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from alertfusion.audio import DecodedAudio, decode_audio
from alertfusion.engine import Engine, Tuning
from alertfusion.errors import AudioError, InputError, ReasonCode, TextError
from alertfusion.result import ClassificationResult, to_legacy
from tests.conftest import FIXTURES
from tests.unit.engine.conftest import HELP_TEXT, HELP_WAV, LONG_WAV

pytestmark = pytest.mark.unit

SR = 44_100


def _decoded(samples: np.ndarray) -> DecodedAudio:
    return DecodedAudio(
        samples=np.ascontiguousarray(samples, dtype=np.float32),
        sample_rate=SR,
        source_sample_rate=SR,
        channels=1,
        format="wav",
    )


def _check_distribution(probs: dict[str, float] | None) -> None:
    assert probs is not None
    values = np.array(list(probs.values()))
    assert np.isfinite(values).all() and ((values >= 0) & (values <= 1)).all()
    assert abs(values.sum() - 1) <= 1e-5


def test_result_is_stable_json(engine: Engine) -> None:
    result = engine.classify(HELP_WAV, text=HELP_TEXT, gate="none")
    again = ClassificationResult.model_validate_json(result.model_dump_json())
    assert again == result
    assert result.model.bundle_version == engine.manifest.bundle_version
    assert result.model.trained is False
    assert set(result.model.quantization) == {"audio_binary", "audio_multiclass", "text"}
    assert result.label in engine.manifest.labels.classes
    assert (
        result.label_ko
        == engine.manifest.labels.classes_ko[engine.manifest.labels.classes.index(result.label)]
    )
    assert result.is_emergency == (result.label != "regular")
    t = result.timings
    for stage in (t.decode_ms, t.features_ms, t.audio_models_ms, t.text_model_ms, t.fusion_ms):
        assert 0 < stage <= t.total_ms


def test_gate_off_runs_every_model_and_fuses(engine: Engine) -> None:
    result = engine.classify(HELP_WAV, text=HELP_TEXT, gate="none")
    assert result.decided_by == "fusion"
    assert result.model.gate == "none"
    assert result.text.status == "used"
    assert result.text.n_tokens is not None and result.text.n_tokens >= 3
    _check_distribution(result.text.probabilities)
    for w in result.windows:
        assert w.decided_by == "fusion"
        assert w.gate is not None  # the binary model ran too (informational)
        _check_distribution(w.audio_probabilities)
        _check_distribution(w.probabilities)
    _check_distribution(result.probabilities)
    assert result.audio.logits is not None and len(result.audio.logits) == 6


def test_gate_regular_stops_multiclass_and_text(engine: Engine) -> None:
    """With the gate on, a window the binary model calls regular is decided by it alone, and
    the text model runs only if some window passed."""
    gated = engine.classify(HELP_WAV, text=HELP_TEXT, gate="binary")
    full = engine.classify(HELP_WAV, text=HELP_TEXT, gate="none")
    assert [w.gate for w in gated.windows] == [w.gate for w in full.windows]
    passed = [w.gate is not None and w.gate.label == "alert" for w in gated.windows]
    for w, ok in zip(gated.windows, passed, strict=True):
        if ok:
            assert w.decided_by == "fusion"
        else:
            assert w.decided_by == "gate" and w.label == "regular"
            assert w.probabilities is None and w.audio_probabilities is None
            assert w.gate is not None
            assert w.emergency_probability == pytest.approx(w.gate.probabilities["alert"])
    if any(passed):
        assert gated.text.status == "used"
    else:
        assert gated.decided_by == "gate" and gated.label == "regular"
        assert gated.text.status == "skipped" and gated.text.skipped_reason == "GATE_REGULAR"
        assert gated.probabilities is None
        assert gated.timings.text_model_ms == 0


def test_gate_binary_on_every_recording_matches_gate_none_where_it_passed(engine: Engine) -> None:
    """For every sample: windows that pass the gate get exactly the gate-off probabilities."""
    for wav in sorted(HELP_WAV.parent.glob("*.wav")):
        gated = engine.classify(wav, text=HELP_TEXT, gate="binary")
        full = engine.classify(wav, text=HELP_TEXT, gate="none")
        for g, f in zip(gated.windows, full.windows, strict=True):
            if g.decided_by != "gate":
                assert g.probabilities == pytest.approx(f.probabilities, abs=1e-9)


def test_the_engine_default_gate_comes_from_the_manifest_or_the_argument(
    tiny_bundle: Path,
) -> None:
    eng = Engine.from_bundle(tiny_bundle, gate="none")
    assert eng.gate == "none"
    assert eng.classify(HELP_WAV).model.gate == "none"
    assert eng.classify(HELP_WAV, gate="binary").model.gate == "binary"
    assert Engine.from_bundle(tiny_bundle).gate == eng.manifest.fusion.gate
    with pytest.raises(InputError):
        Engine.from_bundle(tiny_bundle, gate="maybe")  # type: ignore[arg-type]  # on purpose
    with pytest.raises(InputError):
        eng.classify(HELP_WAV, gate="off")  # type: ignore[arg-type]  # on purpose


def test_windows_of_the_25s_sample(engine: Engine) -> None:
    samples = decode_audio(LONG_WAV.read_bytes(), sample_rate=SR).samples
    assert 25.0 <= len(samples) / SR < 25.5  # a 25 s recording with a short tail
    result = engine.classify(LONG_WAV, gate="none")
    assert [(w.start_s, w.end_s) for w in result.windows] == [
        (0.0, 5.0),
        (5.0, 10.0),
        (10.0, 15.0),
        (15.0, 20.0),
        (20.0, 25.0),
    ]
    assert [w.index for w in result.windows] == [0, 1, 2, 3, 4]
    assert "not scored" in result.explanation  # the tail shorter than 0.5 s
    best = max(result.windows, key=lambda w: w.emergency_probability)
    assert result.selected_window == best.index
    assert result.emergency_probability == best.emergency_probability
    assert result.probabilities == best.probabilities
    assert result.aggregation == "max_emergency_window"
    assert result.duration_s == pytest.approx(len(samples) / SR)


def test_each_window_scores_as_if_it_were_alone(engine: Engine) -> None:
    """Windows are independent: window k of the 25 s sample equals that 5 s slice classified
    on its own (the batch does not leak between windows)."""
    samples = decode_audio(LONG_WAV.read_bytes(), sample_rate=SR).samples
    whole = engine.classify(_decoded(samples), text=HELP_TEXT, gate="none")
    for w in whole.windows[::2]:
        alone = engine.classify(
            _decoded(samples[round(w.start_s * SR) : round(w.end_s * SR)]),
            text=HELP_TEXT,
            gate="none",
        )
        assert alone.probabilities == pytest.approx(w.probabilities, abs=1e-5)


def test_a_later_window_decides_when_it_is_the_most_urgent(engine: Engine) -> None:
    """Five real 5 s windows, reordered so the most urgent one comes last: the overall
    verdict is that last window's, whatever the calmer four say."""
    samples = decode_audio(LONG_WAV.read_bytes(), sample_rate=SR).samples
    step = 5 * SR
    slices = [samples[i * step : (i + 1) * step] for i in range(5)]
    scores = [engine.classify(_decoded(s), gate="none").emergency_probability for s in slices]
    assert len(set(scores)) > 1, "the sample's windows must differ for this test to mean much"
    order = np.argsort(scores, kind="stable")  # most urgent last
    result = engine.classify(_decoded(np.concatenate([slices[i] for i in order])), gate="none")
    assert result.selected_window == 4
    assert result.emergency_probability == pytest.approx(max(scores), abs=1e-6)
    assert result.label == result.windows[4].label
    assert all(w.emergency_probability <= result.emergency_probability for w in result.windows)


def test_short_tail_rule(engine: Engine) -> None:
    """A trailing window under min_window_seconds is not scored unless it is the only one."""
    rng = np.random.default_rng(3)
    noise = (0.1 * rng.standard_normal(round(10.6 * SR))).astype(np.float32)
    result = engine.classify(_decoded(noise[: round(10.02 * SR)]), gate="none")
    assert [(w.start_s, w.end_s) for w in result.windows] == [(0.0, 5.0), (5.0, 10.0)]
    assert "last 0.02 s" in result.explanation
    assert result.duration_s == pytest.approx(10.02)

    longer_tail = engine.classify(_decoded(noise), gate="none")
    assert [w.end_s for w in longer_tail.windows] == [5.0, 10.0, pytest.approx(10.6)]
    assert "not scored" not in longer_tail.explanation

    only = engine.classify(_decoded(noise[: round(0.6 * SR)]), gate="none")
    assert len(only.windows) == 1 and only.windows[0].end_s == pytest.approx(0.6)


def test_short_tail_rule_can_be_switched_off(tiny_bundle: Path) -> None:
    eng = Engine.from_bundle(tiny_bundle, min_window_seconds=0.0)
    noise = (0.1 * np.random.default_rng(3).standard_normal(round(10.02 * SR))).astype(np.float32)
    result = eng.classify(_decoded(noise), gate="none")
    assert len(result.windows) == 3 and result.windows[2].end_s == pytest.approx(10.02)


@pytest.mark.parametrize("text", [None, "", "   ", "\n\t ", "\u200b\u200b"])
def test_no_text_gives_an_audio_only_verdict_that_says_why(
    engine: Engine, text: str | None
) -> None:
    result = engine.classify(HELP_WAV, text=text, gate="none")
    assert result.decided_by == "audio_only"
    assert result.text.status == "skipped"
    assert result.text.skipped_reason == "NO_TEXT"
    assert result.text.detail
    assert result.text.label is None and result.text.logits is None
    assert result.timings.text_model_ms == 0
    assert "audio-only" in result.explanation
    audio = result.windows[result.selected_window].audio_probabilities
    assert result.probabilities == audio  # nothing fused in


def test_text_too_long_is_refused(engine: Engine) -> None:
    with pytest.raises(TextError) as err:
        engine.classify(HELP_WAV, text="도" * (engine.max_text_chars + 1))
    assert err.value.code == ReasonCode.TEXT_TOO_LONG
    # right at the limit is fine, and truncated to max_len tokens
    result = engine.classify(
        HELP_WAV, text="도와주세요 " * (engine.max_text_chars // 6), gate="none"
    )
    assert result.text.n_tokens == engine.manifest.text.max_len


@pytest.mark.parametrize("text", [b"bytes", 5, "\ud800 lone surrogate"])
def test_text_that_is_not_text_is_refused(engine: Engine, text: object) -> None:
    with pytest.raises(TextError) as err:
        engine.classify(HELP_WAV, text=text)  # type: ignore[arg-type]  # on purpose
    assert err.value.code == ReasonCode.INVALID_INPUT


def test_inputs_bytes_path_and_decoded_agree(engine: Engine) -> None:
    data = HELP_WAV.read_bytes()
    by_path = engine.classify(HELP_WAV, text=HELP_TEXT, gate="none")
    by_bytes = engine.classify(data, text=HELP_TEXT, gate="none", filename="x.wav")
    decoded = engine.classify(decode_audio(data, sample_rate=SR), text=HELP_TEXT, gate="none")
    assert by_path.probabilities == by_bytes.probabilities == decoded.probabilities


def test_decoded_audio_at_another_rate_or_length_is_refused(engine: Engine) -> None:
    wrong_rate = DecodedAudio(np.zeros(16_000, np.float32), 16_000, 16_000, 1, "wav")
    with pytest.raises(InputError):
        engine.classify(wrong_rate)
    with pytest.raises(AudioError) as err:
        engine.classify(_decoded(np.zeros(SR // 10)))
    assert err.value.code == ReasonCode.TOO_SHORT
    with pytest.raises(AudioError) as err:
        engine.classify(_decoded(np.full(SR, np.nan)))
    assert err.value.code == ReasonCode.NOT_FINITE
    with pytest.raises(InputError):
        engine.classify(12345)  # type: ignore[arg-type]  # on purpose


def test_too_long_is_refused(tiny_bundle: Path) -> None:
    eng = Engine.from_bundle(tiny_bundle, max_audio_seconds=2.0)
    with pytest.raises(AudioError) as err:
        eng.classify(HELP_WAV)
    assert err.value.code == ReasonCode.TOO_LONG
    with pytest.raises(AudioError) as err:
        eng.classify(_decoded(np.zeros(3 * SR)))
    assert err.value.code == ReasonCode.TOO_LONG


def test_legacy_keys(engine: Engine) -> None:
    fused = to_legacy(engine.classify(HELP_WAV, text=HELP_TEXT, gate="none"))
    assert list(fused) == [
        "result",
        "audio_label",
        "audio_feature",
        "text_label",
        "text_feature",
        "combined_label",
        "combined_feature",
        "combined_probabilities",
    ]
    assert fused["result"] == "success"
    assert fused["combined_probabilities"] == fused["combined_feature"]
    assert len(fused["audio_feature"]) == 6 and len(fused["text_feature"]) == 6
    assert len(fused["combined_feature"]) == 6
    assert abs(sum(fused["combined_feature"]) - 1) < 1e-6
    json.dumps(fused)
    audio_only = to_legacy(engine.classify(HELP_WAV, gate="none"))
    assert audio_only["text_label"] is None and audio_only["text_feature"] is None


def test_always_text_runs_the_text_model_where_the_gate_decides(engine: Engine) -> None:
    """The original server's keys carry the text model's answer in every branch; the
    verdict itself stays the gate's."""
    gated = engine.classify(HELP_WAV, text=HELP_TEXT, gate="binary")
    with_text = engine.classify(HELP_WAV, text=HELP_TEXT, gate="binary", always_text=True)
    plain = {k: v for k, v in gated.model_dump().items() if k not in ("text", "timings")}
    assert {k: v for k, v in with_text.model_dump().items() if k not in ("text", "timings")} == {
        **plain,
        "explanation": with_text.explanation,
    }
    assert gated.decided_by == "gate", "the tiny bundle's gate must stop this sample"
    assert gated.text.status == "skipped" and gated.text.label is None
    assert with_text.text.status == "used" and with_text.text.label is not None
    legacy = to_legacy(with_text)
    assert legacy["text_label"] == with_text.text.label and len(legacy["text_feature"]) == 6
    assert legacy["combined_feature"] is None and legacy["combined_probabilities"] is None


def test_concurrent_classifications_agree(engine: Engine) -> None:
    from concurrent.futures import ThreadPoolExecutor

    expected = engine.classify(LONG_WAV, text=HELP_TEXT, gate="none").probabilities
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(lambda _: engine.classify(LONG_WAV, text=HELP_TEXT, gate="none"), range(8))
        )
    assert all(r.probabilities == expected for r in results)


@pytest.mark.parametrize(
    "tuning",
    [Tuning(concurrent=False), Tuning(speculative_text=True)],
    ids=["sequential", "speculative-text"],
)
def test_every_schedule_gives_the_same_answer(
    engine: Engine, tiny_bundle: Path, tuning: Tuning
) -> None:
    other = Engine.from_bundle(tiny_bundle, tuning=tuning)
    fixtures = [*sorted(HELP_WAV.parent.glob("*.wav")), FIXTURES / "audio" / "silence-3s.wav"]
    gated_outcomes = set()
    for wav in fixtures:
        for gate in ("binary", "none"):
            a = engine.classify(wav, text=HELP_TEXT, gate=gate)
            if gate == "binary":
                gated_outcomes.add(a.decided_by)
            b = other.classify(wav, text=HELP_TEXT, gate=gate)
            assert (a.label, a.decided_by, a.selected_window) == (
                b.label,
                b.decided_by,
                b.selected_window,
            )
            assert a.text.status == b.text.status and a.text.skipped_reason == b.text.skipped_reason
            if a.probabilities is not None:
                assert b.probabilities == pytest.approx(a.probabilities, abs=1e-6)
    # both gate outcomes were compared (a speculative text run cancelled, and one used)
    assert gated_outcomes == {"gate", "fusion"}
    if not tuning.concurrent:
        assert other.sessions.options.intra_op_threads >= 1
        assert other._pool is None  # nothing ran on a worker thread
    other.close()
