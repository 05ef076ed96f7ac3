"""Linear maps and elementwise steps of the audio features, in numpy alone, as librosa, scipy and
scikit-image compute them: windows, mel filters, dB, the DCT, skimage's resize.

The feature image (alertfusion.features) and the recipes' feature graph (alertfusion.recipe)
both run these, so a recipe that describes the emergency image computes the same numbers. Each
map is built once per shape and cached.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import numpy as np

#: scikit-image's default truncation of the anti-aliasing Gaussian (scipy.ndimage's default)
_GAUSS_TRUNCATE = 4.0

WindowName = Literal["hann", "hamming"]
MelScale = Literal["slaney", "htk"]
_COSINE_TERMS: dict[str, tuple[float, ...]] = {"hann": (0.5, 0.5), "hamming": (0.54, 0.46)}


@lru_cache(maxsize=16)
def cosine_window(name: WindowName, n: int, periodic: bool = True) -> np.ndarray:
    """scipy.signal.get_window(name, n, fftbins=periodic), float64, computed as scipy's
    general_cosine does (so the values are the same to the last bit)."""
    import numpy as np

    terms = _COSINE_TERMS[name]
    if n == 1:
        return np.ones(1)
    m = n + 1 if periodic else n
    fac = np.linspace(-np.pi, np.pi, m)
    window = np.zeros(m)
    for k, a in enumerate(terms):
        window += a * np.cos(k * fac)
    return window[:-1] if periodic else window


@lru_cache(maxsize=16)
def padded_window(name: WindowName, n_fft: int, win_length: int, periodic: bool) -> np.ndarray:
    """The analysis window of `win_length` samples centred in `n_fft` (librosa's pad_center)."""
    import numpy as np

    window = cosine_window(name, win_length, periodic)
    if win_length == n_fft:
        return window
    out = np.zeros(n_fft)
    left = (n_fft - win_length) // 2
    out[left : left + win_length] = window
    return out


def _hz_to_mel(hz: np.ndarray, scale: MelScale) -> np.ndarray:
    import numpy as np

    if scale == "htk":
        return np.asarray(2595.0 * np.log10(1.0 + hz / 700.0))
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    mels = hz / f_sp
    log_t = hz >= min_log_hz
    mels[log_t] = min_log_mel + np.log(hz[log_t] / min_log_hz) / logstep
    return mels


def _mel_to_hz(mels: np.ndarray, scale: MelScale) -> np.ndarray:
    import numpy as np

    if scale == "htk":
        return np.asarray(700.0 * (10.0 ** (mels / 2595.0) - 1.0))
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    hz = f_sp * mels
    log_t = mels >= min_log_mel
    hz[log_t] = min_log_hz * np.exp(logstep * (mels[log_t] - min_log_mel))
    return hz


@lru_cache(maxsize=16)
def mel_filters(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    fmin: float,
    fmax: float,
    scale: MelScale = "slaney",
    norm: Literal["slaney"] | None = "slaney",
) -> np.ndarray:
    """Triangular mel filters, (n_mels, 1 + n_fft // 2) float32, as librosa.filters.mel makes
    them (`htk=scale == "htk"`, `norm`); torchaudio's melscale_fbanks is the same map computed
    in float32 (mel_scale="htk", norm=None for its defaults)."""
    import numpy as np

    n_bins = 1 + n_fft // 2
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    lo, hi = _hz_to_mel(np.array([fmin, fmax], dtype=np.float64), scale)
    mel_f = _mel_to_hz(np.linspace(lo, hi, n_mels + 2), scale)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    lower = -ramps[:-2] / fdiff[:-1, np.newaxis]
    upper = ramps[2:] / fdiff[1:, np.newaxis]
    weights = np.maximum(0.0, np.minimum(lower, upper)).astype(np.float32)
    if norm == "slaney":
        enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])
        weights *= enorm[:, np.newaxis]
    assert weights.shape == (n_mels, n_bins)
    weights.setflags(write=False)
    return weights


def to_db(
    x: np.ndarray,
    *,
    ref: float | Literal["max"] = 1.0,
    amin: float = 1e-10,
    top_db: float | None = 80.0,
) -> np.ndarray:
    """librosa.power_to_db(x, ref, amin, top_db) in x's dtype, as librosa computes it
    (`ref="max"`: ref=np.max)."""
    import numpy as np

    db = 10.0 * np.log10(np.maximum(amin, x))
    ref_value = np.max(np.abs(x)) if ref == "max" else abs(ref)
    db -= 10.0 * np.log10(np.maximum(amin, ref_value))
    if top_db is None:
        return db
    return np.maximum(db, db.max() - top_db)


@lru_cache(maxsize=16)
def dct_matrix(n: int, n_out: int) -> np.ndarray:
    """The first `n_out` rows of the orthonormal DCT-II matrix of size n (scipy.fft.dct)."""
    import numpy as np

    k = np.arange(n_out)[:, np.newaxis]
    i = np.arange(n)[np.newaxis, :]
    basis = np.cos(np.pi * k * (2 * i + 1) / (2 * n)) * math.sqrt(2.0 / n)
    basis[0] *= math.sqrt(0.5)
    basis.setflags(write=False)
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


@lru_cache(maxsize=256)
def resize_matrix32(n_in: int, n_out: int) -> np.ndarray:
    """`resize_matrix` as float32 (the resize runs as float32 matrix products)."""
    import numpy as np

    out = resize_matrix(n_in, n_out).astype(np.float32)
    out.setflags(write=False)
    return out


def resize2d(panel: np.ndarray, rows: np.ndarray, cols: np.ndarray, out: np.ndarray) -> None:
    """skimage.transform.resize of one 2-D panel into `out`: a separable linear map, then
    clipping to the panel's own range (resize's `clip=True`)."""
    import numpy as np

    panel = panel.astype(np.float32, copy=False)
    np.clip(rows @ (panel @ cols.T), panel.min(), panel.max(), out=out)
