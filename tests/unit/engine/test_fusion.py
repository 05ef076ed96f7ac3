"""Late fusion in numpy: the formula of docs/REFERENCE_MODEL.md, the gate, window selection."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from alertfusion.errors import AlertFusionError, ReasonCode
from alertfusion.fusion import (
    WindowDecision,
    check_logits,
    decide_windows,
    fuse,
    gate_passed,
    l2_normalised,
    select_window,
    softmax,
)

pytestmark = pytest.mark.unit

finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, width=32)


def test_fuse_is_the_reference_formula() -> None:
    a = np.array([[1.0, -2.0, 0.5, 3.0, 0.0, -1.0]])
    t = np.array([0.2, 4.0, -1.0, 0.0, 2.0, 1.0])
    z = a[0] / np.sqrt((a[0] ** 2).sum()) + t / np.sqrt((t**2).sum())
    expected = np.exp(z) / np.exp(z).sum()
    np.testing.assert_allclose(fuse(a, t)[0], expected, rtol=0, atol=1e-15)


def test_fuse_without_text_is_the_audio_softmax() -> None:
    a = np.array([[2.0, 1.0, 0.0, -1.0, 0.5, 0.25]])
    np.testing.assert_allclose(fuse(a, None), softmax(a))
    # ... which is not what the normalised formula would give with a zero text vector
    assert not np.allclose(fuse(a, None), softmax(l2_normalised(a)))


def test_l2_normalisation_keeps_zero_vectors_finite() -> None:
    out = l2_normalised(np.zeros((2, 6)))
    assert np.array_equal(out, np.zeros((2, 6)))
    p = fuse(np.zeros((1, 6)), np.zeros(6))
    np.testing.assert_allclose(p, np.full((1, 6), 1 / 6))


@settings(max_examples=200, deadline=None)
@given(
    a=arrays(np.float32, (3, 6), elements=finite),
    t=st.none() | arrays(np.float32, (6,), elements=finite),
)
def test_fused_probabilities_are_a_distribution(a: np.ndarray, t: np.ndarray | None) -> None:
    p = fuse(a, t)
    assert np.isfinite(p).all()
    assert ((p >= 0) & (p <= 1)).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)


def test_gate_passes_only_when_alert_beats_regular() -> None:
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 1.0]])
    assert gate_passed(logits, regular_index=0).tolist() == [False, True, False]


def test_check_logits_refuses_bad_model_output() -> None:
    check_logits("m", np.zeros((2, 6)), 2, 6)
    for bad in (np.zeros((1, 6)), np.full((2, 6), np.nan), np.zeros((2, 5))):
        with pytest.raises(AlertFusionError) as err:
            check_logits("m", bad, 2, 6)
        assert err.value.code == ReasonCode.INTERNAL


def _decisions(
    gate: np.ndarray | None, audio: dict[int, np.ndarray], text: np.ndarray | None
) -> list[WindowDecision]:
    n = len(gate) if gate is not None else len(audio)
    return decide_windows(
        n_windows=n, regular_index=0, gate_logits=gate, audio_logits=audio, text_logits=text
    )


def test_gate_decided_window_has_no_invented_probabilities() -> None:
    [d] = _decisions(np.array([[3.0, 0.0]]), {}, None)
    assert d.decided_by == "gate"
    assert d.label_index == 0
    assert d.probabilities is None and d.audio_probabilities is None
    assert d.emergency_probability == pytest.approx(softmax(np.array([3.0, 0.0]))[1])


def test_window_decisions_with_and_without_text() -> None:
    a = np.array([0.0, 0.0, 5.0, 0.0, 0.0, 0.0])
    t = np.array([0.0, 5.0, 0.0, 0.0, 0.0, 0.0])
    [audio_only] = _decisions(None, {0: a}, None)
    assert audio_only.decided_by == "audio_only" and audio_only.label_index == 2
    [fused] = _decisions(None, {0: a}, t)
    assert fused.decided_by == "fusion"
    # equal normalised votes for classes 1 and 2: the tie goes to the first
    assert fused.label_index == 1
    assert fused.probabilities is not None
    assert fused.emergency_probability == pytest.approx(1 - fused.probabilities[0])


def test_a_later_window_wins_when_it_is_the_most_urgent() -> None:
    calm = np.array([4.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    scream = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 6.0])
    audio = {0: calm, 1: calm, 2: calm, 3: calm, 4: scream}
    decisions = _decisions(None, audio, None)
    assert select_window(decisions) == 4
    assert decisions[4].label_index == 5
    # averaging the windows would have said "regular"
    mean = np.mean(
        [d.probabilities for d in decisions],  # type: ignore[arg-type]  # no gate: all set
        axis=0,
    )
    assert int(np.argmax(mean)) == 0


def test_windows_that_passed_the_gate_rank_above_gate_decided_ones() -> None:
    # a window the gate stopped can carry a higher emergency probability (its p(alert)) than
    # one that passed and that the 6-class model then found calm: passing still ranks first
    gate = np.array([[0.1, 0.0], [0.0, 0.1]])
    audio = {1: np.array([5.0, 0.0, 0.0, 0.0, 0.0, 0.0])}
    decisions = _decisions(gate, audio, None)
    assert decisions[0].decided_by == "gate"
    assert decisions[1].emergency_probability < decisions[0].emergency_probability
    assert select_window(decisions) == 1


def test_ties_pick_the_earliest_window() -> None:
    same = np.array([0.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    assert select_window(_decisions(None, {0: same, 1: same, 2: same}, None)) == 0
