"""libsndfile's formats decode exactly as librosa.load decodes them, and close to their source."""

from __future__ import annotations

import numpy as np
import pytest

from alertfusion.audio import decode_audio, sniff_format
from tests.unit.audio.helpers import SR, best_correlation, make_signal, soundfile_encode

pytestmark = pytest.mark.export


def librosa_bytes(data: bytes) -> np.ndarray:
    from model_export.reference_features import reference_load

    return reference_load(data, sr=SR)


def assert_equals_librosa(data: bytes, **expected: object) -> np.ndarray:
    decoded = decode_audio(data, sample_rate=SR, min_seconds=0.0)
    reference = librosa_bytes(data)
    assert decoded.samples.shape == reference.shape
    assert float(np.abs(decoded.samples - reference).max()) == 0.0
    for key, value in expected.items():
        assert getattr(decoded, key) == value, key
    return decoded.samples


# subtype -> the largest quantisation error of that encoding (of a full-scale-0.5 signal)
WAV_SUBTYPES = {
    "PCM_U8": 1 / 128,
    "PCM_16": 1 / 32768,
    "PCM_24": 1 / 2**23,
    "PCM_32": 1 / 2**31,
    "FLOAT": 1e-7,
    "DOUBLE": 1e-7,
    "ULAW": 0.02,
    "ALAW": 0.02,
}


@pytest.mark.parametrize("container", ["WAV", "WAVEX", "RF64", "W64"])
@pytest.mark.parametrize("subtype", list(WAV_SUBTYPES))
def test_wav_encodings_equal_librosa_and_source(container: str, subtype: str) -> None:
    source = make_signal(0.6, 22_050, channels=2)
    data = soundfile_encode(source, 22_050, container, subtype)
    assert_equals_librosa(data, channels=2, source_sample_rate=22_050)
    native = decode_audio(data, sample_rate=22_050)
    assert native.format == ("w64" if container == "W64" else "wav")
    expected = source.mean(axis=1)
    # float32 holds ~24 bits: finer encodings are exact to float32's own rounding
    tolerance = max(WAV_SUBTYPES[subtype], 2**-24)
    assert float(np.abs(native.samples - expected).max()) <= tolerance * 1.01


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT", "ULAW"])
def test_rifx_big_endian_wav_equals_librosa_and_source(subtype: str) -> None:
    source = make_signal(0.6, 22_050, channels=2)
    data = soundfile_encode(source, 22_050, "WAV", subtype, endian="BIG")
    assert data[:4] == b"RIFX"
    assert_equals_librosa(data, channels=2, source_sample_rate=22_050, format="wav")
    native = decode_audio(data, sample_rate=22_050)
    tolerance = max(WAV_SUBTYPES[subtype], 2**-24)
    assert float(np.abs(native.samples - source.mean(axis=1)).max()) <= tolerance * 1.01


@pytest.mark.parametrize(
    "rate", [8_000, 11_025, 16_000, 22_050, 32_000, 44_100, 48_000, 88_200, 96_000]
)
def test_sample_rates_resample_exactly_like_librosa(rate: int) -> None:
    data = soundfile_encode(make_signal(0.7, rate, seed=rate), rate, "WAV", "FLOAT")
    samples = assert_equals_librosa(data, source_sample_rate=rate, sample_rate=SR)
    assert len(samples) == int(np.ceil(round(0.7 * rate) * SR / rate))


@pytest.mark.parametrize("rate", [8_000, 12_345, 16_000, 22_050, 48_000, 96_000])
@pytest.mark.parametrize("seed", [0, 1])
def test_random_audio_resamples_exactly_like_librosa(rate: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(rate // 2, 3 * rate))
    noise = (rng.standard_normal(n) * rng.choice([1e-4, 0.1, 0.7])).clip(-1, 1).astype(np.float32)
    assert_equals_librosa(soundfile_encode(noise, rate, "WAV", "FLOAT"))


@pytest.mark.parametrize("channels", [1, 2, 3, 6, 8])
def test_channels_are_averaged_like_librosa(channels: int) -> None:
    source = make_signal(0.6, 16_000, channels=channels)
    data = soundfile_encode(source, 16_000, "WAV", "FLOAT")
    assert_equals_librosa(data, channels=channels)
    native = decode_audio(data, sample_rate=16_000)
    np.testing.assert_allclose(native.samples, source.mean(axis=1), rtol=0, atol=1e-7)


@pytest.mark.parametrize(
    ("fmt", "subtype", "name", "lossless"),
    [
        ("FLAC", "PCM_16", "flac", True),
        ("FLAC", "PCM_24", "flac", True),
        ("OGG", "VORBIS", "ogg", False),
        ("OGG", "OPUS", "ogg", False),
        ("MP3", "MPEG_LAYER_III", "mp3", False),
        ("AIFF", "PCM_16", "aiff", True),
        ("AU", "PCM_16", "au", True),
        ("CAF", "ALAC_16", "caf", True),
    ],
)
def test_libsndfile_formats_equal_librosa(
    fmt: str, subtype: str, name: str, lossless: bool
) -> None:
    rate = 48_000
    source = make_signal(1.5, rate)[:, 0]
    data = soundfile_encode(source, rate, fmt, subtype)
    assert sniff_format(data[:4096]) == name
    assert_equals_librosa(data, format=name)
    native = decode_audio(data, sample_rate=rate).samples
    if lossless:
        assert len(native) == len(source)
        assert float(np.abs(native - source).max()) <= 1 / 32768
    else:
        corr, _ = best_correlation(native, source, max_lag=rate // 10)
        assert corr >= 0.98
        assert abs(len(native) - len(source)) <= rate // 10
