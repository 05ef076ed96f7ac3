"""The early-fusion feature image of docs/REFERENCE_MODEL.md in numpy alone, equal to librosa's."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from alertfusion.dsp import (
    cosine_window,
    dct_matrix,
    mel_filters,
    resize2d,
    resize_matrix,
    resize_matrix32,
    to_db,
)
from alertfusion.errors import AudioError, ReasonCode

if TYPE_CHECKING:
    import numpy as np

    from alertfusion.manifest import AudioPreprocessing

__all__ = [
    "FeatureBatch",
    "build_feature_images",
    "feature_image",
    "resize_matrix",
    "window_spans",
]


@dataclass(frozen=True)
class FeatureBatch:
    """The images of every window of one recording, in time order."""

    images: np.ndarray  # float32 (N, C, H, W) per cfg.input_shape
    spans_s: list[tuple[float, float]]  # each window's start/end in seconds


def window_spans(n_samples: int, cfg: AudioPreprocessing) -> list[tuple[int, int]]:
    """Consecutive `[start, end)` windows of `cfg.window_seconds`, the last one shorter (not
    padded), as in training; a recording shorter than one window is one window."""
    step = cfg.window_samples
    return [(start, min(start + step, n_samples)) for start in range(0, max(n_samples, 0), step)]


def build_feature_images(samples: np.ndarray, cfg: AudioPreprocessing) -> FeatureBatch:
    """The image of every window of a decoded recording (mono float at `cfg.sample_rate`).

    Each step of the reference (librosa + scikit-image, `model_export/reference_features.py`)
    is a fixed linear map or an elementwise function; the linear maps (periodic Hann window,
    Slaney mel filters, orthonormal DCT-II, and `skimage.transform.resize`'s Gaussian
    anti-aliasing + bilinear zoom, separable per axis) are built once per shape and cached.
    librosa is not imported at run time: its import costs seconds and its numba cache needs a
    writable directory, which Lambda's read-only filesystem lacks (docs/DECISIONS.md).
    """
    import numpy as np

    y = np.ascontiguousarray(samples, dtype=np.float32)
    if y.ndim != 1:
        raise AudioError(
            f"expected mono samples, got shape {y.shape}", code=ReasonCode.INVALID_INPUT
        )
    spans = window_spans(len(y), cfg)
    if not spans:
        raise AudioError("no samples to build features from", code=ReasonCode.EMPTY_AUDIO)
    _check_finite(y)
    height, width = cfg.panel_size
    panels = np.empty((len(spans), 3, height, width), dtype=np.float32)
    for index, (start, end) in enumerate(spans):
        _window_panels(y[start:end], cfg, out=panels[index])
    sr = cfg.sample_rate
    return FeatureBatch(images=_layout(panels, cfg), spans_s=[(s / sr, e / sr) for s, e in spans])


def feature_image(window: np.ndarray, cfg: AudioPreprocessing) -> np.ndarray:
    """The image of one window, (C, H, W) per `cfg.input_shape`."""
    import numpy as np

    y = np.ascontiguousarray(window, dtype=np.float32)
    if y.ndim != 1 or len(y) == 0:
        raise AudioError("a window is a non-empty 1-D array", code=ReasonCode.EMPTY_AUDIO)
    _check_finite(y)
    panels = np.empty((1, 3, *cfg.panel_size), dtype=np.float32)
    _window_panels(y, cfg, out=panels[0])
    return _layout(panels, cfg)[0]


def _layout(panels: np.ndarray, cfg: AudioPreprocessing) -> np.ndarray:
    """(N, 3, H, W) panels S, M', C' as the model's input: stacked rows or three channels."""
    n, _, height, width = panels.shape
    return panels.reshape(n, 1, 3 * height, width) if cfg.layout == "stacked" else panels


def _check_finite(y: np.ndarray) -> None:
    import numpy as np

    if not np.isfinite(y).all():
        raise AudioError("samples contain NaN or infinity", code=ReasonCode.NOT_FINITE)


# --------------------------------------------------------------------------------------------
# the computation


def _window_panels(window: np.ndarray, cfg: AudioPreprocessing, out: np.ndarray) -> None:
    """The resized S, M' and C' panels of one window (float32 samples) into `out` (3, H, W).

    The spectrogram, mel power, dB and z-score steps keep librosa's dtypes and operation order
    (float64 FFT of float32 frames stored as complex64, float32 mel product and statistics):
    M' of the `zscore_db` variant is ill-conditioned where M is close to mean(M) (the log of a
    near-zero difference), so it must be the same float32 numbers as the reference's, not
    merely close. The resize is well-conditioned and runs as float32 matrix products.
    Windows run one after the other: one window's intermediates stay in cache, a batch's
    would not, and a batch was slower than its windows one by one (docs/DECISIONS.md).
    """
    import numpy as np

    length = len(window)
    plan = _plan(cfg, length)
    pad = cfg.n_fft // 2 if cfg.center else 0
    padded = np.zeros(length + 2 * pad, dtype=np.float32)
    padded[pad : pad + length] = window
    frames = np.lib.stride_tricks.sliding_window_view(padded, cfg.n_fft)
    frames = frames[:: cfg.hop_length][: plan.n_frames]
    # (T, F) C-ordered, so its transpose has librosa's (F, T) Fortran layout
    magnitude = np.abs(np.fft.rfft(frames * plan.window, axis=-1).astype(np.complex64))
    mel = np.dot(plan.mel_basis, (magnitude**cfg.mel_power).T)  # float32, as librosa
    mfcc = plan.dct @ _power_to_db(mel, cfg)
    eps = cfg.zscore_eps
    mel_z = (mel - np.mean(mel)) / (np.std(mel) + eps)
    if cfg.mel_transform == "zscore_db":
        mel_z = _power_to_db(mel_z, cfg)
    mfcc_z = (mfcc - np.mean(mfcc)) / (np.std(mfcc) + eps)
    _resize(magnitude.T, plan.resize_s, plan.resize_t, out=out[0])
    _resize(mel_z, plan.resize_mel, plan.resize_t, out=out[1])
    _resize(mfcc_z, plan.resize_mfcc, plan.resize_t, out=out[2])


def _power_to_db(x: np.ndarray, cfg: AudioPreprocessing) -> np.ndarray:
    """librosa.power_to_db(x, ref, amin, top_db), in x's dtype like librosa."""
    return to_db(x, ref=cfg.db_ref, amin=cfg.db_amin, top_db=cfg.db_top)


def _resize(panel: np.ndarray, rows: np.ndarray, cols: np.ndarray, out: np.ndarray) -> None:
    """skimage.transform.resize of one (features x time) panel into `out`."""
    resize2d(panel, rows, cols, out)


# --------------------------------------------------------------------------------------------
# cached linear maps


@dataclass(frozen=True)
class _Plan:
    n_frames: int
    window: np.ndarray  # (n_fft,) float64
    mel_basis: np.ndarray  # (n_mels, F) float32
    dct: np.ndarray  # (n_mfcc, n_mels) float64
    resize_s: np.ndarray  # (H, F) float32
    resize_mel: np.ndarray  # (H, n_mels) float32
    resize_mfcc: np.ndarray  # (H, n_mfcc) float32
    resize_t: np.ndarray  # (W, T) float32


def _n_frames(length: int, cfg: AudioPreprocessing) -> int:
    padded = length + (2 * (cfg.n_fft // 2) if cfg.center else 0)
    if padded < cfg.n_fft:
        raise AudioError(
            f"a window of {length} samples is shorter than n_fft={cfg.n_fft}",
            code=ReasonCode.TOO_SHORT,
        )
    return 1 + (padded - cfg.n_fft) // cfg.hop_length


@lru_cache(maxsize=64)
def _plan(cfg: AudioPreprocessing, length: int) -> _Plan:
    n_frames = _n_frames(length, cfg)
    height, width = cfg.panel_size
    n_bins = 1 + cfg.n_fft // 2
    return _Plan(
        n_frames=n_frames,
        window=_hann(cfg.n_fft),
        mel_basis=_mel_basis(cfg),
        dct=_dct_ortho(cfg.n_mels, cfg.n_mfcc),
        resize_s=resize_matrix32(n_bins, height),
        resize_mel=resize_matrix32(cfg.n_mels, height),
        resize_mfcc=resize_matrix32(cfg.n_mfcc, height),
        resize_t=resize_matrix32(n_frames, width),
    )


def _hann(n: int) -> np.ndarray:
    """Periodic Hann window (scipy.signal.get_window('hann', n, fftbins=True))."""
    return cosine_window("hann", n, True)


def _mel_basis(cfg: AudioPreprocessing) -> np.ndarray:
    """Mel filters, (n_mels, 1 + n_fft // 2) float32, as librosa.filters.mel makes them with
    the manifest's `mel_htk` and `mel_norm`."""
    return mel_filters(
        cfg.sample_rate,
        cfg.n_fft,
        cfg.n_mels,
        cfg.mel_fmin,
        cfg.fmax,
        "htk" if cfg.mel_htk else "slaney",
        cfg.mel_norm,
    )


def _dct_ortho(n: int, n_out: int) -> np.ndarray:
    """The first `n_out` rows of the orthonormal DCT-II matrix of size n (scipy.fft.dct)."""
    return dct_matrix(n, n_out)
