"""The numpy feature path against the librosa + scikit-image reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alertfusion.features import build_feature_images
from alertfusion.manifest import AudioPreprocessing
from tests.unit.audio.helpers import (
    FEATURE_TOLERANCE,
    FIXTURE_FILES,
    feature_error,
    librosa_load,
    reference_images,
)

pytestmark = pytest.mark.export

VARIANTS = [
    AudioPreprocessing(mel_transform=transform, layout=layout)
    for transform in ("zscore", "zscore_db")
    for layout in ("stacked", "channels")
]
VARIANT_IDS = [f"{c.mel_transform}-{c.layout}" for c in VARIANTS]


@pytest.mark.parametrize("cfg", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.name)
def test_fixture_features_equal_the_reference(path: Path, cfg: AudioPreprocessing) -> None:
    y = librosa_load(path)
    fast = build_feature_images(y, cfg).images
    assert feature_error(fast, reference_images(y, cfg), cfg) <= FEATURE_TOLERANCE


@st.composite
def random_audio(draw: st.DrawFn) -> np.ndarray:
    """Random lengths (including shorter than n_fft and a few windows), amplitudes from
    silence to clipping, noise, tones and sparse clicks."""
    n = draw(st.one_of(st.integers(1, 2048), st.integers(2048, 3 * 220_500 + 7)))
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["noise", "tone", "clicks", "silence", "clipped", "dc"]))
    amplitude = draw(st.sampled_from([1e-6, 1e-3, 0.1, 1.0]))
    rng = np.random.default_rng(seed)
    if kind == "noise":
        y = rng.standard_normal(n) * amplitude
    elif kind == "tone":
        freq = rng.uniform(20, 20_000)
        y = amplitude * np.sin(2 * np.pi * freq * np.arange(n) / 44_100)
    elif kind == "clicks":
        y = np.zeros(n)
        y[rng.integers(0, n, size=max(1, n // 5000))] = amplitude
    elif kind == "silence":
        y = np.zeros(n)
    elif kind == "clipped":
        y = np.clip(rng.standard_normal(n) * 4, -1, 1)
    else:
        y = np.full(n, amplitude)
    return y.astype(np.float32)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(y=random_audio(), cfg=st.sampled_from(VARIANTS))
def test_random_audio_features_equal_the_reference(y: np.ndarray, cfg: AudioPreprocessing) -> None:
    fast = build_feature_images(y, cfg).images
    assert np.isfinite(fast).all()
    assert feature_error(fast, reference_images(y, cfg), cfg) <= FEATURE_TOLERANCE
