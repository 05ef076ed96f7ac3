"""Every supported format decodes: PyAV's match their source (libsndfile's against
librosa.load: tests/export/audio)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from alertfusion.audio import decode_audio, sniff_format
from alertfusion.errors import AudioError, ReasonCode
from tests.unit.audio.helpers import (
    SR,
    as_media_recorder_webm,
    best_correlation,
    make_signal,
    pyav_encode,
    soundfile_encode,
)

pytestmark = pytest.mark.unit


# ------------------------------------------------------------------ WAV and libsndfile's formats


def test_rifx_is_never_handed_to_ffmpeg() -> None:
    """FFmpeg's wav demuxer reads RIFX PCM as little-endian: noise, not the recording. A RIFX
    file libsndfile finds no samples in (a data size of 0) stays empty instead."""
    data = bytearray(
        soundfile_encode(make_signal(1.0, 16_000), 16_000, "WAV", "PCM_16", endian="BIG")
    )
    at = data.index(b"data")
    data[at + 4 : at + 8] = bytes(4)
    with pytest.raises(AudioError) as err:
        decode_audio(bytes(data), sample_rate=SR)
    assert err.value.code is ReasonCode.EMPTY_AUDIO


# ------------------------------------------------------------- what phones record (PyAV path)

PYAV_CASES = {
    # name: (container, codec, rate, channels, sniffed format, lossless, options)
    "m4a-aac": ("ipod", "aac", 44_100, 1, "m4a", False, {}),
    "m4a-aac-stereo-48k": ("mp4", "aac", 48_000, 2, "m4a", False, {}),
    "m4a-alac": ("ipod", "alac", 44_100, 2, "m4a", True, {}),
    "3gp-amr-nb": ("3gp", "libopencore_amrnb", 8_000, 1, "3gp", False, {"bit_rate": 12_200}),
    "amr-nb-raw": ("amr", "libopencore_amrnb", 8_000, 1, "amr", False, {"bit_rate": 12_200}),
    "webm-opus": ("webm", "libopus", 48_000, 1, "webm", False, {}),
    "mkv-flac": ("matroska", "flac", 44_100, 2, "mkv", True, {}),
    "adts-aac": ("adts", "aac", 22_050, 1, "aac", False, {}),
    "ogg-flac": ("ogg", "flac", 44_100, 1, "ogg", True, {}),
    "mp3-lame": ("mp3", "libmp3lame", 44_100, 2, "mp3", False, {}),
}


@pytest.mark.parametrize("case", list(PYAV_CASES))
def test_containers_decode_like_their_source(case: str) -> None:
    container, codec, rate, channels, name, lossless, options = PYAV_CASES[case]
    seconds = 2.0
    source = make_signal(seconds, rate, channels=channels)
    data = pyav_encode(
        source,
        rate,
        container,
        codec,
        **options,  # type: ignore[arg-type]  # cases hold bit_rate only, not container_options
    )
    assert sniff_format(data[:4096]) == name
    decoded = decode_audio(data, sample_rate=rate)
    assert (decoded.format, decoded.source_sample_rate, decoded.channels) == (name, rate, channels)
    expected = source.mean(axis=1)
    if lossless:
        assert len(decoded.samples) == len(expected)
        assert float(np.abs(decoded.samples - expected).max()) <= 2 / 32768
    else:
        # codecs add priming and padding: the length is right to a few frames
        assert abs(decoded.duration_s - seconds) <= 0.15
        corr, lag = best_correlation(decoded.samples, expected, max_lag=rate // 5)
        assert corr >= 0.9, (corr, lag)
    resampled = decode_audio(data, sample_rate=SR)
    assert resampled.sample_rate == SR
    assert len(resampled.samples) == int(np.ceil(len(decoded.samples) * SR / rate))


def test_media_recorder_webm_without_duration() -> None:
    import av

    source = make_signal(3.0, 48_000)
    data = as_media_recorder_webm(pyav_encode(source, 48_000, "webm", "libopus"))
    with av.open(io.BytesIO(data), "r") as probe:
        assert probe.duration is None  # really no duration for the demuxer to rely on
    decoded = decode_audio(data, sample_rate=SR)
    assert decoded.format == "webm"
    assert decoded.duration_s == pytest.approx(3.0, abs=0.05)
    native = decode_audio(data, sample_rate=48_000).samples
    corr, _ = best_correlation(native, source[:, 0], max_lag=4800)
    assert corr >= 0.9


def test_mp3_in_wav_falls_back_to_ffmpeg() -> None:
    """A WAVE_FORMAT_MPEGLAYER3 file (some recorders write these): libsndfile cannot, FFmpeg can."""
    source = make_signal(1.5, 44_100)
    data = pyav_encode(source, 44_100, "wav", "libmp3lame")
    assert sniff_format(data) == "wav"
    decoded = decode_audio(data, sample_rate=44_100)
    corr, _ = best_correlation(decoded.samples, source[:, 0], max_lag=4410)
    assert corr >= 0.95


def test_file_name_is_never_trusted() -> None:
    data = soundfile_encode(make_signal(1.0, 16_000), 16_000, "FLAC", "PCM_16")
    decoded = decode_audio(data, sample_rate=SR, filename="recording.mp3")
    assert decoded.format == "flac"
