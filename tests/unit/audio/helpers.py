"""Helpers of the audio tests: the fixture recordings, their librosa references, comparisons."""

from __future__ import annotations

import warnings
from functools import cache
from pathlib import Path

import numpy as np

from alertfusion.manifest import AudioPreprocessing
from tests.conftest import FIXTURES, SAMPLES

SR = 44_100
#: every committed recording the decoder and the features are checked on
FIXTURE_FILES: list[Path] = sorted(SAMPLES.glob("*.wav")) + sorted(
    (FIXTURES / "audio").glob("*.wav")
)
#: the fast path's allowed deviation from the reference, as a fraction of a feature's range
FEATURE_TOLERANCE = 1e-4


@cache
def librosa_load(path: Path) -> np.ndarray:
    """The reference decode (librosa.load at 44.1 kHz, soxr_hq), cached per test session."""
    from model_export.reference_features import reference_load

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return reference_load(path, sr=SR)


def reference_images(samples: np.ndarray, cfg: AudioPreprocessing) -> np.ndarray:
    from model_export.reference_features import reference_feature_images

    with warnings.catch_warnings():
        # librosa warns that n_fft is larger than a short last window; that is expected
        warnings.simplefilter("ignore")
        return reference_feature_images(samples, cfg)


def panels(images: np.ndarray, cfg: AudioPreprocessing) -> list[np.ndarray]:
    """The S, M' and C' panels of a batch of images, each (N, H, W)."""
    height = cfg.panel_size[0]
    if cfg.layout == "stacked":
        return [images[:, 0, i * height : (i + 1) * height] for i in range(3)]
    return [images[:, i] for i in range(3)]


def feature_error(fast: np.ndarray, ref: np.ndarray, cfg: AudioPreprocessing) -> float:
    """max |fast - ref| of each panel (S, M', C') over a recording's windows, as a fraction of
    that panel's range in the reference; a constant panel (silence) is measured against its
    magnitude instead (at least 1)."""
    assert fast.shape == ref.shape, (fast.shape, ref.shape)
    assert fast.dtype == np.float32
    worst = 0.0
    for f, r in zip(panels(fast, cfg), panels(ref, cfg), strict=True):
        scale = float(r.max() - r.min()) or max(float(np.abs(r).max()), 1.0)
        worst = max(worst, float(np.abs(f.astype(np.float64) - r).max()) / scale)
    return worst
