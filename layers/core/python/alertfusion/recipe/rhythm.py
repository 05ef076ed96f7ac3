"""Pitch and rhythm ops of a recipe in numpy alone, written as librosa 0.11 computes them:
librosa.yin, librosa.onset.onset_strength (from a dB mel spectrogram), librosa.feature.tempo.

librosa's FFTs are numpy's; its FFT sizes come from scipy.fft.next_fast_len, reproduced by
`next_fast_len` (5-smooth numbers), so the autocorrelations are the same computations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alertfusion.dsp import cosine_window
from alertfusion.errors import AudioError, ReasonCode

if TYPE_CHECKING:
    import numpy as np

    from alertfusion.recipe import schema as s


def next_fast_len(target: int) -> int:
    """The smallest 5-smooth integer >= target (scipy.fft.next_fast_len(target, real=True))."""
    if target <= 6:
        return max(target, 1)
    best = 1 << (target - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            # the smallest power of two taking p35 to at least target
            n = p35
            while n < target:
                n *= 2
            best = min(best, n)
            p35 *= 3
        p5 *= 5
    return best


def autocorrelate(y: np.ndarray, max_size: int, axis: int) -> np.ndarray:
    """librosa.autocorrelate for real input: |rfft|**2 back through irfft, first max_size lags."""
    import numpy as np

    n_pad = next_fast_len(2 * y.shape[axis] - 1)
    spectrum = np.fft.rfft(y, n=n_pad, axis=axis)
    power = spectrum.real**2 + spectrum.imag**2
    out = np.fft.irfft(power, n=n_pad, axis=axis)
    index = [slice(None)] * out.ndim
    index[axis] = slice(max_size)
    return out[tuple(index)]


def _cmnd(frames: np.ndarray, min_period: int, max_period: int) -> np.ndarray:
    """librosa's cumulative mean normalised difference, (max_period - min_period + 1, n)."""
    import numpy as np

    acf = autocorrelate(frames, max_period + 1, axis=-2)
    energy = np.square(frames)
    np.cumsum(energy, out=energy, axis=-2)
    k = slice(1, max_period + 1)
    energy[..., 0, :] = 0
    energy[..., k, :] = 2 * (acf[..., 0:1, :] - acf[..., k, :]) - energy[..., : k.stop - 1, :]
    numerator = energy[..., min_period : max_period + 1, :]
    k_range = np.r_[k][:, np.newaxis]
    cumulative_mean = np.cumsum(energy[..., k, :], axis=-2) / k_range
    denominator = cumulative_mean[..., min_period - 1 : max_period, :]
    tiny = np.finfo(denominator.dtype).tiny
    return numerator / (denominator + tiny)


def _parabolic_shifts(x: np.ndarray) -> np.ndarray:
    """librosa's piecewise parabolic interpolation along axis -2 (0 at the edges and where
    the optimum falls outside the neighbours)."""
    import numpy as np

    shifts = np.zeros_like(x)
    prev, mid, nxt = x[:-2], x[1:-1], x[2:]
    a = nxt + prev - 2 * mid
    b = (nxt - prev) / 2
    inside = np.abs(b) < np.abs(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        shifts[1:-1] = np.where(inside, -b / np.where(inside, a, 1), 0)
    return shifts


def yin(node: s.Yin, y: np.ndarray, sample_rate: int) -> np.ndarray:
    import numpy as np

    frame_length = node.frame_length
    hop = node.hop_length or frame_length // 4
    if node.fmax > sample_rate / 2:
        raise ValueError(f"yin fmax={node.fmax} is above the Nyquist frequency")
    if node.center:
        y = np.pad(y, frame_length // 2, mode=node.pad_mode)
    if len(y) < frame_length:
        raise AudioError(
            f"yin frames of {frame_length} samples need a longer window than {len(y)}",
            code=ReasonCode.TOO_SHORT,
        )
    frames = np.lib.stride_tricks.sliding_window_view(y, frame_length)[::hop].T
    min_period = int(np.floor(sample_rate / node.fmax))
    max_period = min(int(np.ceil(sample_rate / node.fmin)), frame_length - 1)
    cmnd = _cmnd(frames, min_period, max_period)
    shifts = _parabolic_shifts(cmnd)
    # librosa.util.localmin along the periods (edge-padded), the first period by its neighbour
    padded = np.pad(cmnd, [(1, 1), (0, 0)], mode="edge")
    is_trough = (cmnd < padded[:-2]) & (cmnd <= padded[2:])
    is_trough[0] = cmnd[0] < cmnd[1]
    below = is_trough & (cmnd < node.trough_threshold)
    global_min = np.argmin(cmnd, axis=0)[np.newaxis]
    period = np.argmax(below, axis=0)[np.newaxis]
    none_below = np.all(~below, axis=0, keepdims=True)
    period[none_below] = global_min[none_below]
    refined = (min_period + period + np.take_along_axis(shifts, period, axis=0))[0]
    return np.asarray(sample_rate / refined)


def onset_strength(node: s.OnsetStrength, spectrum: np.ndarray) -> np.ndarray:
    import numpy as np

    if spectrum.ndim != 2:
        raise ValueError(f"onset_strength takes a 2-D dB spectrogram, not shape {spectrum.shape}")
    lag = node.lag
    n = spectrum.shape[-1]
    rise = np.maximum(0.0, spectrum[:, lag:] - spectrum[:, :-lag])
    envelope = np.mean(rise, axis=0)
    envelope = np.pad(envelope, (lag + node.pad_frames, 0), mode="constant")
    return envelope[:n]


def tempo(node: s.Tempo, envelope: np.ndarray, sample_rate: int) -> np.ndarray:
    import numpy as np

    if envelope.ndim != 1:
        raise ValueError(f"tempo takes a 1-D onset envelope, not shape {envelope.shape}")
    win = int(node.ac_size * sample_rate) // node.hop_length
    if win < 2:
        raise ValueError(f"tempo's ac_size of {node.ac_size} s is under two frames")
    n = len(envelope)
    padded = np.pad(envelope, win // 2, mode="linear_ramp", end_values=(0, 0))
    frames = np.lib.stride_tricks.sliding_window_view(padded, win).T[:, :n]
    window = cosine_window("hann", win, True)[:, np.newaxis]
    gram = autocorrelate(frames * window, win, axis=0)
    peak = np.max(np.abs(gram).astype(float), axis=0, keepdims=True)
    peak[peak < np.finfo(peak.dtype).tiny] = 1.0
    mean = np.mean(gram / peak, axis=-1)
    bpms = np.zeros(win, dtype=np.float64)
    bpms[0] = np.inf
    bpms[1:] = 60.0 * sample_rate / (node.hop_length * np.arange(1.0, win))
    with np.errstate(invalid="ignore"):
        prior = -0.5 * ((np.log2(bpms) - np.log2(node.start_bpm)) / node.std_bpm) ** 2
    if node.max_tempo is not None:
        prior[: int(np.argmax(bpms < node.max_tempo))] = -np.inf
    best = int(np.argmax(np.log1p(1e6 * mean) + prior))
    return np.asarray([bpms[best]])
