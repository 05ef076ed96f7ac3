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


# --------------------------------------------------------------------------------------------
# `python -m model_export.reference_features FILE...`: the runtime path against this reference


def _timed(fn: Any, repeat: int) -> tuple[Any, float]:
    """fn()'s result and its median wall time in ms over `repeat` calls (after one warm-up)."""
    import statistics
    import time

    result = fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return result, statistics.median(times)


def compare(paths: list[str], repeat: int = 20) -> list[dict[str, Any]]:
    """For each file: max |decode_audio - librosa.load|, the largest feature difference (as a
    fraction of each panel's range, over both mel variants and both layouts), and the median
    time of decode and of features on both paths."""
    return [_compare_one(path, repeat) for path in paths]


def _compare_one(path: str, repeat: int) -> dict[str, Any]:
    from functools import partial

    from alertfusion.audio import decode_audio
    from alertfusion.features import build_feature_images
    from alertfusion.manifest import AudioPreprocessing

    with open(path, "rb") as fh:
        data = fh.read()  # timed from memory: no disk in the measurement
    default = AudioPreprocessing()
    sr = default.sample_rate
    decoded, ours_decode_ms = _timed(partial(decode_audio, data, sample_rate=sr), repeat)
    ours = decoded.samples
    ref, ref_decode_ms = _timed(partial(reference_load, data, sr), repeat)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa: n_fft larger than a short last window
        worst = 0.0
        for transform in ("zscore", "zscore_db"):
            for layout in ("stacked", "channels"):
                cfg = AudioPreprocessing(mel_transform=transform, layout=layout)
                fast = build_feature_images(ours, cfg).images
                worst = max(worst, _panel_error(fast, reference_feature_images(ref, cfg), cfg))
        _, ours_feat_ms = _timed(partial(build_feature_images, ours, default), repeat)
        _, ref_feat_ms = _timed(partial(reference_feature_images, ref, default), repeat)
    same_length = len(ours) == len(ref)
    return {
        "file": os.path.basename(path),
        "seconds": round(len(ours) / sr, 3),
        "decode_max_abs_diff": float(np.abs(ours - ref).max()) if same_length else None,
        "feature_max_rel_diff": worst,
        "ours_ms": {"decode": ours_decode_ms, "features": ours_feat_ms},
        "reference_ms": {"decode": ref_decode_ms, "features": ref_feat_ms},
    }


def _panel_error(fast: np.ndarray, ref: np.ndarray, cfg: AudioPreprocessing) -> float:
    """max |fast - ref| per panel as a fraction of the reference panel's range (1 % of its
    magnitude when it is all but constant), the largest over the panels."""
    height = cfg.panel_size[0]
    worst = 0.0
    for i in range(3):
        if cfg.layout == "stacked":
            f, r = (
                fast[:, 0, i * height : (i + 1) * height],
                ref[:, 0, i * height : (i + 1) * height],
            )
        else:
            f, r = fast[:, i], ref[:, i]
        scale = max(float(r.max() - r.min()), 1e-2 * float(np.abs(r).max()), 1e-30)
        worst = max(worst, float(np.abs(f.astype(np.float64) - r).max()) / scale)
    return worst


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(
        prog="python -m model_export.reference_features",
        description="Check the runtime's decoding and features against the librosa reference.",
    )
    parser.add_argument("files", nargs="+", help="audio files")
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per measurement")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    rows = compare(args.files, args.repeat)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        f"{'file':32} {'sec':>6} {'decode diff':>11} {'feat diff':>9} "
        f"{'ours dec+feat ms':>17} {'ref dec+feat ms':>16}"
    )
    for row in rows:
        o, r = row["ours_ms"], row["reference_ms"]
        print(
            f"{row['file']:32} {row['seconds']:6.2f} {row['decode_max_abs_diff']:11.2e} "
            f"{row['feature_max_rel_diff']:9.2e} "
            f"{o['decode']:7.2f}+{o['features']:<7.2f}   {r['decode']:7.2f}+{r['features']:<7.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
