"""The reference feature path: librosa + scikit-image, written as docs/REFERENCE_MODEL.md says.

This is what the original server (and training) computed, kept as the yardstick the runtime's
numpy path (`alertfusion.features`) is checked against, and as the benchmark's "seed path".
It imports librosa, so it never runs in Lambda.
"""

from __future__ import annotations

import io
import os
import warnings
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from alertfusion.manifest import AudioPreprocessing


def _librosa() -> ModuleType:
    # librosa's audioread fallback imports stdlib modules deprecated in Python 3.13
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import librosa
        import librosa.core.audio  # noqa: F401

    return librosa


def reference_load(path_or_bytes: Any, sr: int = 44100) -> np.ndarray:
    """`librosa.load(path_or_file, sr=sr, mono=True, res_type="soxr_hq")` (float32, mono)."""
    librosa = _librosa()

    source = path_or_bytes
    if isinstance(source, bytes | bytearray | memoryview):
        source = io.BytesIO(bytes(source))
    elif isinstance(source, os.PathLike):
        source = os.fspath(source)
    with warnings.catch_warnings():
        # the first load imports audioread's backends (deprecated stdlib modules)
        warnings.simplefilter("ignore", DeprecationWarning)
        y, _ = librosa.load(source, sr=sr, mono=True, res_type="soxr_hq")
    return y


def _zscore(x: np.ndarray, eps: float) -> np.ndarray:
    return (x - np.mean(x)) / (np.std(x) + eps)


def reference_panels(
    window: np.ndarray, cfg: AudioPreprocessing
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S, M' and C' of one window before resizing."""
    librosa = _librosa()

    y = np.asarray(window, dtype=np.float32)
    sr = cfg.sample_rate
    stft_kwargs: dict[str, Any] = {
        "n_fft": cfg.n_fft,
        "hop_length": cfg.hop_length,
        "window": cfg.window,
        "center": cfg.center,
        "pad_mode": cfg.pad_mode,
    }
    s = np.abs(librosa.stft(y, **stft_kwargs))
    m = librosa.feature.melspectrogram(
        y=y,
        sr=sr,
        n_mels=cfg.n_mels,
        fmin=cfg.mel_fmin,
        fmax=cfg.fmax,
        htk=cfg.mel_htk,
        norm=cfg.mel_norm,
        power=cfg.mel_power,
        **stft_kwargs,
    )
    db_kwargs: dict[str, Any] = {"ref": cfg.db_ref, "amin": cfg.db_amin, "top_db": cfg.db_top}
    c = librosa.feature.mfcc(
        S=librosa.power_to_db(m, **db_kwargs),
        n_mfcc=cfg.n_mfcc,
        dct_type=cfg.dct_type,
        norm=cfg.dct_norm,
    )
    m_z = _zscore(m, cfg.zscore_eps)
    if cfg.mel_transform == "zscore_db":
        m_z = librosa.power_to_db(m_z, **db_kwargs)
    return s, m_z, _zscore(c, cfg.zscore_eps)


def reference_feature_image(window: np.ndarray, cfg: AudioPreprocessing) -> np.ndarray:
    """The early-fusion image of one window, (C, H, W) per `cfg.input_shape`."""
    from skimage.transform import resize

    panels = [resize(p, cfg.panel_size) for p in reference_panels(window, cfg)]
    if cfg.layout == "stacked":
        return np.vstack(panels)[np.newaxis].astype(np.float32)
    return np.stack(panels).astype(np.float32)


def reference_feature_images(samples: np.ndarray, cfg: AudioPreprocessing) -> np.ndarray:
    """Every window's image, (N, C, H, W): consecutive `window_seconds` windows, last shorter."""
    step = cfg.window_samples
    y = np.asarray(samples, dtype=np.float32)
    starts = range(0, max(len(y), 1), step)
    return np.stack([reference_feature_image(y[s : s + step], cfg) for s in starts])
