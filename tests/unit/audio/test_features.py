"""The numpy feature path: windowing, typed errors, the resize against scikit-image (librosa
parity: tests/export/audio)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertfusion.errors import AudioError, ReasonCode
from alertfusion.features import (
    FeatureBatch,
    build_feature_images,
    feature_image,
    resize_matrix,
    window_spans,
)
from alertfusion.manifest import AudioPreprocessing

pytestmark = pytest.mark.unit

CFG = AudioPreprocessing()


# ---------------------------------------------------------------------------------- windows


def test_default_window_is_five_seconds_of_44k() -> None:
    assert CFG.window_samples == 220_500


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (1, [(0, 1)]),
        (220_499, [(0, 220_499)]),
        (220_500, [(0, 220_500)]),
        (220_501, [(0, 220_500), (220_500, 220_501)]),
        (
            1_106_875,
            [(i * 220_500, (i + 1) * 220_500) for i in range(5)] + [(1_102_500, 1_106_875)],
        ),
        (0, []),
    ],
)
def test_window_spans_are_consecutive_and_the_last_is_shorter(
    n: int, expected: list[tuple[int, int]]
) -> None:
    assert window_spans(n, CFG) == expected


@given(st.integers(1, 3_000_000), st.floats(0.1, 10.0))
def test_window_spans_cover_the_recording_exactly_once(n: int, seconds: float) -> None:
    cfg = AudioPreprocessing(window_seconds=seconds)
    spans = window_spans(n, cfg)
    assert spans[0][0] == 0 and spans[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert all(end - start == cfg.window_samples for start, end in spans[:-1])
    assert 0 < spans[-1][1] - spans[-1][0] <= cfg.window_samples


def test_batch_has_one_image_and_span_per_window() -> None:
    y = np.random.default_rng(0).standard_normal(2 * 220_500 + 1000).astype(np.float32) * 0.1
    batch = build_feature_images(y, CFG)
    assert isinstance(batch, FeatureBatch)
    assert batch.images.shape == (3, 1, 192, 64) and batch.images.dtype == np.float32
    assert batch.images.flags.c_contiguous
    assert batch.spans_s == [(0.0, 5.0), (5.0, 10.0), (10.0, (2 * 220_500 + 1000) / 44_100)]
    # each window's image is the image of that window alone: batching changes nothing
    for i, (start, end) in enumerate(window_spans(len(y), CFG)):
        np.testing.assert_array_equal(batch.images[i], feature_image(y[start:end], CFG))


def test_channels_layout_shape() -> None:
    cfg = AudioPreprocessing(layout="channels")
    y = np.random.default_rng(1).standard_normal(44_100).astype(np.float32)
    assert build_feature_images(y, cfg).images.shape == (1, 3, 64, 64)


@pytest.mark.parametrize(
    ("samples", "code"),
    [
        (np.zeros(0, np.float32), ReasonCode.EMPTY_AUDIO),
        (np.array([0.0, np.nan] * 1000, np.float32), ReasonCode.NOT_FINITE),
        (np.array([0.0, np.inf] * 1000, np.float32), ReasonCode.NOT_FINITE),
    ],
)
def test_unusable_samples_are_typed_errors(samples: np.ndarray, code: ReasonCode) -> None:
    with pytest.raises(AudioError) as info:
        build_feature_images(samples, CFG)
    assert info.value.code == code


# ------------------------------------------------------------------------------- the resize


@settings(max_examples=60, deadline=None)
@given(
    n_in=st.integers(1, 600),
    n_out=st.integers(1, 240),
    other=st.integers(1, 300),
    seed=st.integers(0, 2**32 - 1),
)
def test_resize_matrices_equal_skimage_resize(n_in: int, n_out: int, other: int, seed: int) -> None:
    from skimage.transform import resize

    image = np.random.default_rng(seed).standard_normal((n_in, other)).astype(np.float32)
    expected = resize(image, (n_out, 64))
    got = resize_matrix(n_in, n_out) @ image.astype(np.float64) @ resize_matrix(other, 64).T
    got = np.clip(got, image.min(), image.max())
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6 * max(1.0, float(np.ptp(image))))
