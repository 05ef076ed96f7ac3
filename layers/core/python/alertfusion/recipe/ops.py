"""The feature ops of a recipe in numpy alone, each as its reference computes it (librosa,
torchaudio's conventions, scikit-image; the tolerances are in tests/export/recipes).

The spectral steps share alertfusion.dsp with the feature image (alertfusion.features) and
keep its dtypes and operation order, so a recipe describing the emergency image gives the same
bits. Rhythm and pitch (yin, onset strength, tempo) are in alertfusion.recipe.rhythm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from alertfusion import dsp
from alertfusion.errors import AudioError, ReasonCode
from alertfusion.recipe import schema as s

if TYPE_CHECKING:
    import numpy as np


@dataclass
class Context:
    """What one window's ops share: the sample rate, the graph's nodes, and STFT magnitudes
    already computed (two stft nodes that differ only in power share one FFT)."""

    sample_rate: int
    nodes: dict[str, s.Node]
    memo: dict[tuple[Any, ...], np.ndarray] = field(default_factory=dict)
    #: each node's rate where a resample changed it (alertfusion.recipe.graph.node_rates)
    rates: dict[str, int] = field(default_factory=dict)

    def rate(self, node: str) -> int:
        return self.rates.get(node, self.sample_rate)


def too_short(message: str) -> AudioError:
    return AudioError(message, code=ReasonCode.TOO_SHORT)


# ------------------------------------------------------------------------------- spectral


def stft_magnitude(node: s.Stft, y: np.ndarray) -> np.ndarray:
    """|STFT| as (frames, bins) float32, C-ordered: float64 FFT of the windowed float32
    frames, stored as complex64 (librosa's dtypes; the feature image's code)."""
    import numpy as np

    length = len(y)
    pad = node.n_fft // 2 if node.center else 0
    if node.center and node.pad_mode == "reflect" and length <= pad:
        raise too_short(
            f"reflect padding of {pad} samples needs a window longer than that, not {length}"
        )
    if length + 2 * pad < node.n_fft:
        raise too_short(f"a window of {length} samples is shorter than n_fft={node.n_fft}")
    if node.pad_mode == "constant" or pad == 0:
        padded = np.zeros(length + 2 * pad, dtype=np.float32)
        padded[pad : pad + length] = y
    else:
        padded = np.pad(y, pad, mode="reflect")
    n_frames = 1 + (len(padded) - node.n_fft) // node.hop_length
    frames = np.lib.stride_tricks.sliding_window_view(padded, node.n_fft)
    frames = frames[:: node.hop_length][:n_frames]
    length = node.win_length or node.n_fft
    window = dsp.padded_window(node.window, node.n_fft, length, node.periodic)
    return np.abs(np.fft.rfft(frames * window, axis=-1).astype(np.complex64))


def stft(node: s.Stft, y: np.ndarray, ctx: Context) -> np.ndarray:
    """(bins, frames): the transpose of the C-ordered magnitude (librosa's Fortran layout, and
    the layout the feature image's matrix products see)."""
    key = (
        "stft",
        node.input,
        node.n_fft,
        node.hop_length,
        node.win_length,
        node.window,
        node.periodic,
        node.center,
        node.pad_mode,
    )
    magnitude = ctx.memo.get(key)
    if magnitude is None:
        magnitude = stft_magnitude(node, y)
        ctx.memo[key] = magnitude
    out = magnitude if node.power == 1 else magnitude ** float(node.power)
    return out.T


def mel(node: s.Mel, x: np.ndarray, ctx: Context) -> np.ndarray:
    import numpy as np

    source = ctx.nodes[node.input]
    assert isinstance(source, s.Stft)  # check_structure
    rate = ctx.rate(node.input)
    fmax = node.fmax if node.fmax is not None else rate / 2
    basis = dsp.mel_filters(rate, source.n_fft, node.n_mels, node.fmin, fmax, node.scale, node.norm)
    return np.dot(basis, x)


def db(node: s.Db, x: np.ndarray) -> np.ndarray:
    import numpy as np

    if node.kind == "power":
        return dsp.to_db(x, ref=node.ref, amin=node.amin, top_db=node.top_db)
    # librosa.amplitude_to_db: power_to_db(|S|**2, ref=ref**2, amin=amin**2, top_db)
    magnitude = np.abs(x)
    ref = np.max(magnitude) if node.ref == "max" else abs(node.ref)
    return dsp.to_db(np.square(magnitude), ref=ref**2, amin=node.amin**2, top_db=node.top_db)


def mfcc(node: s.Mfcc, x: np.ndarray) -> np.ndarray:
    if node.n_mfcc > x.shape[0]:
        raise ValueError(f"n_mfcc={node.n_mfcc} is more than the {x.shape[0]} mel bands")
    return dsp.dct_matrix(x.shape[0], node.n_mfcc) @ x


def savgol_coefficients(width: int, order: int) -> np.ndarray:
    """scipy.signal.savgol_coeffs(width, polyorder=order, deriv=order, use="dot"): the
    `order`-th derivative at the centre of the least-squares polynomial of degree `order`."""
    import math

    import numpy as np

    half = width // 2
    positions = np.arange(-half, half + 1, dtype=np.float64)
    design = positions[:, np.newaxis] ** np.arange(order + 1)
    return math.factorial(order) * np.linalg.pinv(design)[order]


def delta(node: s.Delta, x: np.ndarray) -> np.ndarray:
    """librosa.feature.delta(width, order, mode="interp") along the last axis: the
    Savitzky-Golay derivative inside; at the edges, the derivative of the polynomial fitted to
    the first / last `width` frames, which for polyorder = order is that fit's constant."""
    import numpy as np

    n = x.shape[-1]
    if n < node.width:
        raise too_short(f"delta of width {node.width} needs {node.width} frames, not {n}")
    half = node.width // 2
    coeffs = savgol_coefficients(node.width, node.order)
    inner = np.lib.stride_tricks.sliding_window_view(x, node.width, axis=-1) @ coeffs
    out = np.empty(x.shape, dtype=x.dtype)
    out[..., half : n - half] = inner
    out[..., :half] = inner[..., :1]
    out[..., n - half :] = inner[..., -1:]
    return out


# -------------------------------------------------------------------------------- scaling


def zscore(node: s.Zscore, x: np.ndarray) -> np.ndarray:
    import numpy as np

    if node.axes is None:
        mean = np.mean(x)
        std = np.std(x) if node.ddof == 0 else np.std(x, ddof=node.ddof)
    else:
        axes = tuple(node.axes)
        mean = np.mean(x, axis=axes, keepdims=True)
        std = np.std(x, axis=axes, ddof=node.ddof, keepdims=True)
    if node.eps is not None:
        return (x - mean) / (std + node.eps)
    assert node.clamp is not None  # the schema asks for exactly one
    return (x - mean) / np.maximum(std, node.clamp)


def _along(values: float | list[float], axis: int, ndim: int) -> Any:
    import numpy as np

    if not isinstance(values, list):
        return values
    shape = [1] * ndim
    shape[axis] = len(values)
    return np.asarray(values, dtype=np.float64).reshape(shape)


def affine(node: s.Affine, x: np.ndarray) -> np.ndarray:
    """(x - mean) / scale in float64, stored in x's float dtype (scikit-learn's in-place
    StandardScaler.transform of float32 data does the same)."""
    import numpy as np

    mean = 0.0 if node.mean is None else node.mean
    scale = 1.0 if node.scale is None else node.scale
    for name, values in (("mean", mean), ("scale", scale)):
        if isinstance(values, list) and (
            not -x.ndim <= node.axis < x.ndim or len(values) != x.shape[node.axis]
        ):
            raise ValueError(
                f"affine {name} has {len(values)} values for an axis of "
                f"{x.shape[node.axis] if -x.ndim <= node.axis < x.ndim else 'no'} entries"
            )
    out = (x - _along(mean, node.axis, x.ndim)) / _along(scale, node.axis, x.ndim)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32
    return np.asarray(out, dtype=dtype)


def frames(node: s.Frames, x: np.ndarray) -> np.ndarray:
    import numpy as np

    have = x.shape[node.axis]
    if have >= node.n:
        index = [slice(None)] * x.ndim
        index[node.axis] = slice(0, node.n)
        return x[tuple(index)]
    value = float(np.min(x)) if node.pad_value == "min" else node.pad_value
    widths = [(0, 0)] * x.ndim
    widths[node.axis] = (0, node.n - have)
    return np.pad(x, widths, mode="constant", constant_values=value)


# ---------------------------------------------------------------------------------- image


def resize(node: s.Resize, x: np.ndarray) -> np.ndarray:
    """skimage.transform.resize(x, size) with its defaults; (H, W, C) per channel, clipped
    to the range of the whole input as skimage clips."""
    import numpy as np

    height, width = node.size
    if x.ndim == 2:
        out = np.empty((height, width), dtype=np.float32)
        dsp.resize2d(
            x, dsp.resize_matrix32(x.shape[0], height), dsp.resize_matrix32(x.shape[1], width), out
        )
        return out
    if x.ndim != 3:
        raise ValueError(f"resize takes a 2-D or (H, W, C) node, not shape {x.shape}")
    image = x.astype(np.float32, copy=False)
    rows = dsp.resize_matrix32(image.shape[0], height)
    cols = dsp.resize_matrix32(image.shape[1], width)
    out = np.empty((height, width, image.shape[2]), dtype=np.float32)
    for c in range(image.shape[2]):
        out[:, :, c] = rows @ (image[:, :, c] @ cols.T)
    np.clip(out, image.min(), image.max(), out=out)
    return out


def colormap(node: s.Colormap, x: np.ndarray) -> np.ndarray:
    import numpy as np

    if x.ndim != 2:
        raise ValueError(f"colormap takes a 2-D node, not shape {x.shape}")
    values = x.astype(np.float64)
    lo = float(values.min()) if node.vmin is None else node.vmin
    hi = float(values.max()) if node.vmax is None else node.vmax
    scaled = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    index = np.clip(np.floor(scaled * 256.0), 0, 255).astype(np.intp)
    return np.asarray(node.table, dtype=np.float32)[index]


def combine(node: s.Stack | s.Concat, arrays: list[np.ndarray]) -> np.ndarray:
    import numpy as np

    if isinstance(node, s.Stack):
        return np.stack(arrays, axis=node.axis)
    if node.flatten:
        return np.concatenate([a.ravel() for a in arrays])
    return np.concatenate(arrays, axis=node.axis)


# -------------------------------------------------------------------------------- dispatch


def resample(node: s.Resample, x: np.ndarray, ctx: Context) -> np.ndarray:
    """librosa.resample(x, orig_sr, rate, res_type="soxr_hq"): python-soxr, then the length
    fixed to ceil(n * rate / orig_sr) (librosa.util.fix_length: cut, or zeros at the end)."""
    import numpy as np
    import soxr

    if x.ndim != 1:
        raise ValueError(f"resample takes a 1-D signal, not shape {x.shape}")
    if node.rate == ctx.sample_rate:
        return x
    y = soxr.resample(np.ascontiguousarray(x, dtype=np.float32), ctx.sample_rate, node.rate,
                      quality="soxr_hq")  # fmt: skip
    n = int(np.ceil(len(x) * node.rate / ctx.sample_rate))
    if len(y) >= n:
        return np.ascontiguousarray(y[:n], dtype=np.float32)
    return np.concatenate([y, np.zeros(n - len(y), dtype=np.float32)])


def apply(node: s.Node, args: list[np.ndarray], ctx: Context) -> np.ndarray:
    """One node's output from its sources' outputs (in `node.sources()` order)."""
    import numpy as np

    from alertfusion.recipe import rhythm

    if isinstance(node, s.Stack | s.Concat):
        return combine(node, args)
    (x,) = args
    if isinstance(node, s.Resample):
        return resample(node, x, ctx)
    if isinstance(node, s.Stft):
        if x.ndim != 1:
            raise ValueError(f"stft takes a 1-D signal, not shape {x.shape}")
        return stft(node, np.ascontiguousarray(x, dtype=np.float32), ctx)
    if isinstance(node, s.Mel):
        return mel(node, x, ctx)
    if isinstance(node, s.Db):
        return db(node, x)
    if isinstance(node, s.Mfcc):
        return mfcc(node, x)
    if isinstance(node, s.Delta):
        return delta(node, x)
    if isinstance(node, s.Log1p):
        return np.log1p(x)
    if isinstance(node, s.Zscore):
        return zscore(node, x)
    if isinstance(node, s.Affine):
        return affine(node, x)
    if isinstance(node, s.Frames):
        return frames(node, x)
    if isinstance(node, s.Resize):
        return resize(node, x)
    if isinstance(node, s.Colormap):
        return colormap(node, x)
    if isinstance(node, s.Energy):
        return np.asarray([np.mean(x**2)], dtype=x.dtype)
    if isinstance(node, s.Yin):
        return rhythm.yin(node, np.ascontiguousarray(x, dtype=np.float32), ctx.sample_rate)
    if isinstance(node, s.OnsetStrength):
        return rhythm.onset_strength(node, x)
    if isinstance(node, s.Tempo):
        return rhythm.tempo(node, x, ctx.sample_rate)
    raise AssertionError(f"no implementation of op {node.op}")  # Waveform is the input
