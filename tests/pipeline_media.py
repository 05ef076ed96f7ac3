"""Audio files in every container the pipeline accepts, encoded with PyAV at test time.

Tests need real WAV/FLAC/Ogg/MP3/M4A/3GP/AMR/WebM bytes of a known duration; encoding a
tone with PyAV (installed with the runtime) keeps binary fixtures out of the repository.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np


class _Sink(io.RawIOBase):
    """A write-only, non-seekable stream: muxers cannot go back to fill in a duration,
    like a browser's MediaRecorder streaming WebM."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.data += bytes(b)
        return len(b)


def tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    wave = (0.3 * np.sin(2 * math.pi * 440.0 * t)).astype(np.float32)
    return np.tile(wave, (channels, 1))


def encode(
    container: str,
    codec: str,
    *,
    seconds: float,
    rate: int,
    channels: int = 1,
    codec_options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
    seekable: bool = True,
    bit_rate: int | None = None,
) -> bytes:
    """`seconds` of a 440 Hz tone encoded by PyAV (`container` is an FFmpeg muxer name)."""
    import av

    out: Any = io.BytesIO() if seekable else _Sink()
    muxer = av.open(out, mode="w", format=container, options=container_options or {})
    stream: Any = muxer.add_stream(codec, rate=rate, options=codec_options or {})
    stream.layout = "mono" if channels == 1 else "stereo"
    if bit_rate:
        stream.bit_rate = bit_rate
    frame_size = stream.codec_context.frame_size or 1024
    samples = tone(seconds, rate, channels)
    n = samples.shape[1]
    for start in range(0, n, frame_size):
        chunk = np.ascontiguousarray(samples[:, start : start + frame_size])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=stream.layout.name)
        frame.sample_rate = rate
        frame.pts = start
        for packet in stream.encode(frame):
            muxer.mux(packet)
    for packet in stream.encode(None):
        muxer.mux(packet)
    muxer.close()
    return bytes(out.getvalue() if seekable else out.data)


def wav_bytes(seconds: float, rate: int = 16_000, channels: int = 1) -> bytes:
    return encode("wav", "pcm_s16le", seconds=seconds, rate=rate, channels=channels)


def m4a_bytes(seconds: float, rate: int = 44_100) -> bytes:
    return encode("ipod", "aac", seconds=seconds, rate=rate)
