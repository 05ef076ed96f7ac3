"""The early-fusion feature image of docs/REFERENCE_MODEL.md in numpy alone, equal to librosa's."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from alertfusion.errors import AudioError, ReasonCode

if TYPE_CHECKING:
    import numpy as np

    from alertfusion.manifest import AudioPreprocessing

#: scikit-image's default truncation of the anti-aliasing Gaussian (scipy.ndimage's default)
_GAUSS_TRUNCATE = 4.0


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
    import numpy as np

    db = 10.0 * np.log10(np.maximum(cfg.db_amin, x))
    db -= 10.0 * np.log10(np.maximum(cfg.db_amin, abs(cfg.db_ref)))
    return np.maximum(db, db.max() - cfg.db_top)


def _resize(panel: np.ndarray, rows: np.ndarray, cols: np.ndarray, out: np.ndarray) -> None:
    """skimage.transform.resize of one (features x time) panel into `out`: a separable linear
    map, then clipping to the panel's own range (resize's `clip=True`)."""
    import numpy as np

    panel = panel.astype(np.float32, copy=False)
    np.clip(rows @ (panel @ cols.T), panel.min(), panel.max(), out=out)


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
    import numpy as np

    n_frames = _n_frames(length, cfg)
    height, width = cfg.panel_size
    n_bins = 1 + cfg.n_fft // 2
    return _Plan(
        n_frames=n_frames,
        window=_hann(cfg.n_fft),
        mel_basis=_mel_basis(cfg),
        dct=_dct_ortho(cfg.n_mels, cfg.n_mfcc),
        resize_s=resize_matrix(n_bins, height).astype(np.float32),
        resize_mel=resize_matrix(cfg.n_mels, height).astype(np.float32),
        resize_mfcc=resize_matrix(cfg.n_mfcc, height).astype(np.float32),
        resize_t=resize_matrix(n_frames, width).astype(np.float32),
    )


@lru_cache(maxsize=8)
def _hann(n: int) -> np.ndarray:
    """Periodic Hann window, computed as scipy.signal.get_window('hann', n, fftbins=True) does
    (so the float64 values are the same to the last bit)."""
    import numpy as np

    fac = np.linspace(-np.pi, np.pi, n + 1)
    window = np.zeros(n + 1)
    window += 0.5 * np.cos(0 * fac)
    window += 0.5 * np.cos(fac)
    return window[:-1]


def _hz_to_mel_slaney(hz: np.ndarray) -> np.ndarray:
    import numpy as np

    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    mels = hz / f_sp
    log_t = hz >= min_log_hz
    mels[log_t] = min_log_mel + np.log(hz[log_t] / min_log_hz) / logstep
    return mels


def _mel_to_hz_slaney(mels: np.ndarray) -> np.ndarray:
    import numpy as np

    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    hz = f_sp * mels
    log_t = mels >= min_log_mel
    hz[log_t] = min_log_hz * np.exp(logstep * (mels[log_t] - min_log_mel))
    return hz


@lru_cache(maxsize=8)
def _mel_basis(cfg: AudioPreprocessing) -> np.ndarray:
    """Slaney-normalised mel filters, (n_mels, 1 + n_fft // 2), as librosa.filters.mel makes
    them (float32, like librosa's default dtype)."""
    import numpy as np

    n_bins = 1 + cfg.n_fft // 2
    fft_freqs = np.fft.rfftfreq(cfg.n_fft, 1.0 / cfg.sample_rate)
    lo, hi = _hz_to_mel_slaney(np.array([cfg.mel_fmin, cfg.fmax], dtype=np.float64))
    mel_f = _mel_to_hz_slaney(np.linspace(lo, hi, cfg.n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    lower = -ramps[:-2] / fdiff[:-1, np.newaxis]
    upper = ramps[2:] / fdiff[1:, np.newaxis]
    weights = np.maximum(0.0, np.minimum(lower, upper)).astype(np.float32)
    enorm = 2.0 / (mel_f[2 : cfg.n_mels + 2] - mel_f[: cfg.n_mels])
    weights *= enorm[:, np.newaxis]
    assert weights.shape == (cfg.n_mels, n_bins)
    return weights


@lru_cache(maxsize=8)
def _dct_ortho(n: int, n_out: int) -> np.ndarray:
    """The first `n_out` rows of the orthonormal DCT-II matrix of size n (scipy.fft.dct)."""
    import numpy as np

    k = np.arange(n_out)[:, np.newaxis]
    i = np.arange(n)[np.newaxis, :]
    basis = np.cos(np.pi * k * (2 * i + 1) / (2 * n)) * math.sqrt(2.0 / n)
    basis[0] *= math.sqrt(0.5)
    return basis


def _mirror(index: np.ndarray, n: int) -> np.ndarray:
    """scipy.ndimage's 'mirror' boundary (d c b | a b c d | c b a), for integer indices."""
    import numpy as np

    if n == 1:
        return np.zeros_like(index)
    period = 2 * n - 2
    index = np.mod(index, period)
    return np.where(index >= n, period - index, index)


def _map_mirror(coord: np.ndarray, n: int) -> np.ndarray:
    """ndimage's map_coordinate for mode 'mirror' (ni_interpolation.c), for float coordinates."""
    import numpy as np

    if n <= 1:
        return np.zeros_like(coord)
    period = 2 * n - 2
    low = period * np.trunc(-coord / period) + coord
    low = np.where(low <= 1 - n, low + period, -low)
    high = coord - period * np.trunc(coord / period)
    high = np.where(high >= n, period - high, high)
    return np.where(coord < 0, low, np.where(coord > n - 1, high, coord))


@lru_cache(maxsize=256)
def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """The (n_out, n_in) linear map `skimage.transform.resize` applies along one axis with its
    defaults (order 1, mode 'reflect' = ndimage 'mirror', anti-aliasing): a Gaussian of
    sigma = max(0, (n_in / n_out - 1) / 2) truncated at 4 sigma (`ndi.gaussian_filter`), then
    `ndi.zoom(order=1, grid_mode=True)`. Clipping to the input range is done by the caller."""
    import numpy as np

    sigma = max(0.0, (n_in / n_out - 1.0) / 2.0)
    gauss = np.eye(n_in)
    if sigma > 1e-15:  # ndimage skips an axis whose sigma is this small
        radius = int(_GAUSS_TRUNCATE * sigma + 0.5)
        taps = np.arange(-radius, radius + 1)
        kernel = np.exp(-0.5 / (sigma * sigma) * taps**2)
        kernel /= kernel.sum()
        rows = np.repeat(np.arange(n_in), len(taps))
        cols = _mirror((np.arange(n_in)[:, np.newaxis] + taps).ravel(), n_in)
        gauss = np.zeros((n_in, n_in))
        np.add.at(gauss, (rows, cols), np.tile(kernel, n_in))
    coord = _map_mirror((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, n_in)
    base = np.floor(coord).astype(np.int64)
    frac = (coord - base)[:, np.newaxis]
    # linear interpolation between the smoothed rows around each output coordinate
    return (1.0 - frac) * gauss[_mirror(base, n_in)] + frac * gauss[_mirror(base + 1, n_in)]
