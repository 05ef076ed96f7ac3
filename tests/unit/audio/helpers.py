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
    that panel's range in the reference. A panel that is all but constant (its range below 1 %
    of its magnitude: silence, a lone click, where the range is a few float32 rounding steps)
    is measured against 1 % of its magnitude instead: 1e-4 of that is ~8 float32 steps."""
    assert fast.shape == ref.shape, (fast.shape, ref.shape)
    assert fast.dtype == np.float32
    worst = 0.0
    for f, r in zip(panels(fast, cfg), panels(ref, cfg), strict=True):
        scale = max(float(r.max() - r.min()), 1e-2 * float(np.abs(r).max()), 1e-30)
        worst = max(worst, float(np.abs(f.astype(np.float64) - r).max()) / scale)
    return worst


# ------------------------------------------------------------------------ making test files


def make_signal(seconds: float, rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """(n, channels) float32: a rising chirp under a slow amplitude envelope plus a little noise,
    kept below 3.4 kHz so narrow-band codecs (AMR-NB) carry it. It has no period, so a
    cross-correlation peak can only be at the true alignment."""
    n = round(seconds * rate)
    t = np.arange(n) / rate
    rng = np.random.default_rng(seed)
    f0, f1 = 200.0, min(3000.0, rate / 2.5)
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * max(seconds, 1e-9)))
    envelope = 0.5 + 0.4 * np.sin(2 * np.pi * 1.3 * t)
    out = np.empty((n, channels), np.float32)
    for c in range(channels):
        out[:, c] = 0.5 * envelope * np.sin(phase + c) + 0.01 * rng.standard_normal(n)
    return out


def soundfile_encode(
    samples: np.ndarray, rate: int, fmt: str, subtype: str, *, endian: str = "FILE"
) -> bytes:
    """`endian="BIG"` with WAV writes RIFX (big-endian WAV)."""
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype=subtype, endian=endian)
    return buf.getvalue()


def pyav_encode(
    samples: np.ndarray,
    rate: int,
    container: str,
    codec: str,
    *,
    bit_rate: int | None = None,
    container_options: dict[str, str] | None = None,
) -> bytes:
    """Encode (n, channels) float32 samples with PyAV (FFmpeg) into `container`."""
    import io

    import av

    samples = np.asarray(samples, np.float32).reshape(len(samples), -1)
    layout = {1: "mono", 2: "stereo"}[samples.shape[1]]
    buf = io.BytesIO()
    with av.open(buf, "w", format=container, options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        assert isinstance(stream, av.AudioStream)
        if bit_rate:
            stream.codec_context.bit_rate = bit_rate
        frame_size = stream.codec_context.frame_size or 1024
        resampler = av.AudioResampler(
            format=stream.codec_context.format.name, layout=layout, rate=rate
        )

        def encode(frame: av.AudioFrame | None) -> None:
            for converted in resampler.resample(frame):
                for packet in stream.encode(converted):
                    out.mux(packet)

        for start in range(0, len(samples), frame_size):
            chunk = np.ascontiguousarray(samples[start : start + frame_size].T)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate, frame.pts = rate, start
            encode(frame)
        encode(None)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


_EBML_SEGMENT = b"\x18\x53\x80\x67"
_EBML_DURATION = b"\x44\x89"
_EBML_VOID = 0xEC


def as_media_recorder_webm(webm: bytes) -> bytes:
    """Rewrite a WebM file as browsers' MediaRecorder writes it: no Duration element (turned
    into a Void element of the same size) and a Segment of unknown size."""
    data = bytearray(webm)
    seg = data.index(_EBML_SEGMENT)
    assert data[seg + 4] == 0x01, "expected an 8-byte Segment size"
    data[seg + 4 : seg + 12] = b"\x01\xff\xff\xff\xff\xff\xff\xff"
    dur = data.index(_EBML_DURATION, seg)
    size_byte = data[dur + 2]
    assert size_byte in (0x84, 0x88), "expected a 4- or 8-byte float Duration"
    total = 3 + (size_byte & 0x0F)  # id (2) + size (1) + payload
    data[dur : dur + total] = bytes([_EBML_VOID, 0x80 | (total - 2)]) + bytes(total - 2)
    return bytes(data)


def best_correlation(decoded: np.ndarray, source: np.ndarray, max_lag: int) -> tuple[float, int]:
    """The normalised correlation of `source` with `decoded` shifted by the lag in
    -max_lag..max_lag that matches best (codecs delay, or trim their priming), and that lag."""
    best = (-1.0, 0)
    for lag_sign, (a, b) in ((1, (decoded, source)), (-1, (source, decoded))):
        n = min(len(a) - max_lag, len(b))
        assert n > 0
        ref = b[:n].astype(np.float64)
        sig = a[: n + max_lag].astype(np.float64)
        size = 1 << (len(sig) + n).bit_length()
        xcorr = np.fft.irfft(np.fft.rfft(sig, size) * np.conj(np.fft.rfft(ref, size)), size)
        lag = int(np.argmax(xcorr[: max_lag + 1]))
        corr = float(np.corrcoef(sig[lag : lag + n], ref)[0, 1])
        best = max(best, (corr, lag_sign * lag))
    return best
