"""The margin rule's bounds hold for any logits and any error, and its verdicts follow them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from alertfusion.agreement import (
    Tolerance,
    judge_logits,
    logit_errors,
    logit_spreads,
    measure,
    normalised_error,
    probability_bound,
    top2_margin,
)
from alertfusion.fusion import fuse, l2_normalised, softmax

pytestmark = pytest.mark.unit

finite = st.floats(-30, 30, allow_nan=False, width=64)
small = st.floats(-3, 3, allow_nan=False, width=64)


def _vectors(elements: st.SearchStrategy[float]) -> st.SearchStrategy[np.ndarray]:
    return arrays(np.float64, 6, elements=elements)


@settings(max_examples=300, deadline=None)
@given(_vectors(finite), _vectors(small))
def test_a_logit_gap_moves_by_at_most_the_error_spread(a: np.ndarray, d: np.ndarray) -> None:
    spread = float(logit_spreads(a[None], (a + d)[None])[0])
    for i in range(6):
        for j in range(6):
            moved = abs(d[i] - d[j])
            assert moved <= spread + 1e-12
    # so a top-1 decision whose margin is beyond the spread cannot change (beyond float
    # rounding of a + d: a margin of 1e-280 is lost when 1 is added)
    if top2_margin(a) > spread + 1e-9:
        assert np.argmax(a + d) == np.argmax(a)


@settings(max_examples=300, deadline=None)
@given(_vectors(finite), _vectors(small))
def test_a_probability_moves_by_at_most_tanh_of_a_quarter_spread(
    a: np.ndarray, d: np.ndarray
) -> None:
    spread = float(logit_spreads(a[None], (a + d)[None])[0])
    shift = np.abs(softmax(a + d) - softmax(a)).max()
    assert shift <= probability_bound(spread) + 1e-12


@settings(max_examples=300, deadline=None)
@given(_vectors(finite), _vectors(small))
def test_normalising_moves_by_at_most_the_bound(a: np.ndarray, d: np.ndarray) -> None:
    error = float(np.linalg.norm(d))
    moved = float(np.linalg.norm(l2_normalised(a + d) - l2_normalised(a)))
    assert moved <= normalised_error(float(np.linalg.norm(a)), error) + 1e-9


@settings(max_examples=300, deadline=None)
@given(_vectors(finite), _vectors(small), _vectors(finite), _vectors(small))
def test_the_fused_gap_moves_by_at_most_the_bound_of_both_errors(
    a: np.ndarray, da: np.ndarray, t: np.ndarray, dt: np.ndarray
) -> None:
    """The bound alertfusion.agreement uses for a fused window's label."""
    bound = np.sqrt(2) * (
        normalised_error(float(np.linalg.norm(a)), float(np.linalg.norm(da)))
        + normalised_error(float(np.linalg.norm(t)), float(np.linalg.norm(dt)))
    )
    before = np.log(fuse(a[None], t))[0]
    after = np.log(fuse((a + da)[None], t + dt))[0]
    assert float(logit_spreads(before[None], after[None])[0]) <= bound + 1e-9


def test_measure_takes_the_largest_of_each_over_the_inputs() -> None:
    fp32 = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    int8 = np.array([[0.5, -0.5, 0.0], [1.0, 2.0, 3.9]])
    assert list(logit_spreads(fp32, int8)) == pytest.approx([1.0, 0.9])
    assert list(logit_errors(fp32, int8)) == pytest.approx([np.sqrt(0.5), 0.9])
    assert measure(fp32, int8) == Tolerance(
        pytest.approx(1.0),  # type: ignore[arg-type]  # approx compares as a float
        pytest.approx(0.9),  # type: ignore[arg-type]  # approx compares as a float
    )
    assert logit_spreads(fp32, np.array([[np.nan, 0, 0], [1, 2, 3]]))[0] == np.inf


def test_judged_with_a_tolerance_a_real_flip_fails_and_a_near_tie_is_reported() -> None:
    fp32 = np.array([[5.0, 0.0], [0.2, 0.0]])
    int8 = np.array([[0.0, 5.0], [0.0, 0.2]])
    judged = judge_logits(fp32, int8, tolerance=1.0, labels=["regular", "alert"])
    real, tie = judged.decisions
    assert (real.status, real.fp32, real.int8) == ("disagree", "regular", "alert")
    assert tie.status == "near_tie" and tie.margin == pytest.approx(0.2)
    assert judged.rate == 0.0 and not judged.ok()
    assert "margin 5" in real.describe()


def test_leave_one_out_judges_an_input_by_the_others_errors() -> None:
    # one input's error is far larger than every other's and flips it: a real disagreement;
    # its error also covers the others' margins, which become near ties
    fp32 = np.array([[3.0, 0.0]] * 4 + [[10.0, 0.0]])
    int8 = fp32.copy()
    int8[:4] += [[0.1, 0.0]]
    int8[0] = [0.0, 3.0]
    judged = judge_logits(fp32, int8)
    assert [d.status for d in judged.decisions] == ["disagree"] + ["near_tie"] * 3 + ["agree"]
    # two such inputs cover each other: both become near ties
    int8[1] = [0.0, 3.0]
    assert [d.status for d in judge_logits(fp32, int8).decisions][:2] == ["near_tie"] * 2
