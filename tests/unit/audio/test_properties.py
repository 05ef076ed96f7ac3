"""Property tests: any bytes at all give valid audio or a typed AudioError, nothing else."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alertfusion.audio import MAX_ABS_SAMPLE, DecodedAudio, decode_audio
from alertfusion.errors import AudioError, ReasonCode
from tests.corpus.bad_audio import bad_audio_cases
from tests.unit.audio.helpers import SR, make_signal, pyav_encode, soundfile_encode

pytestmark = [pytest.mark.unit, pytest.mark.timeout(600)]

INPUT_REASONS = {
    ReasonCode.EMPTY_AUDIO,
    ReasonCode.UNSUPPORTED_FORMAT,
    ReasonCode.DECODE_FAILED,
    ReasonCode.TOO_SHORT,
    ReasonCode.TOO_LONG,
    ReasonCode.NOT_FINITE,
}
PROPERTY_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@cache
def seed_files() -> dict[str, bytes]:
    """Small real files of every family the decoder handles (0.8 s each)."""
    mono16k = make_signal(0.8, 16_000)
    stereo = make_signal(0.8, 44_100, channels=2)
    return {
        "wav-pcm16": soundfile_encode(mono16k, 16_000, "WAV", "PCM_16"),
        "wav-float-stereo": soundfile_encode(stereo, 44_100, "WAV", "FLOAT"),
        "wavex-pcm24": soundfile_encode(stereo, 44_100, "WAVEX", "PCM_24"),
        "rf64-ulaw": soundfile_encode(mono16k, 16_000, "RF64", "ULAW"),
        "flac": soundfile_encode(mono16k, 16_000, "FLAC", "PCM_16"),
        "ogg-vorbis": soundfile_encode(stereo, 44_100, "OGG", "VORBIS"),
        "ogg-opus": soundfile_encode(make_signal(0.8, 48_000), 48_000, "OGG", "OPUS"),
        "mp3": soundfile_encode(stereo, 44_100, "MP3", "MPEG_LAYER_III"),
        "m4a-aac": pyav_encode(stereo, 44_100, "ipod", "aac"),
        "3gp-amr": pyav_encode(make_signal(0.8, 8000), 8000, "3gp", "libopencore_amrnb"),
        "webm-opus": pyav_encode(make_signal(0.8, 48_000), 48_000, "webm", "libopus"),
    }


def check(data: bytes) -> DecodedAudio | AudioError:
    """The property: a valid DecodedAudio, or an AudioError with an input reason."""
    try:
        decoded = decode_audio(data, sample_rate=SR)
    except AudioError as exc:
        assert exc.code in INPUT_REASONS, exc
        return exc
    samples = decoded.samples
    assert samples.dtype == np.float32 and samples.ndim == 1 and samples.flags.c_contiguous
    assert np.isfinite(samples).all()
    assert float(np.abs(samples).max(initial=0.0)) <= MAX_ABS_SAMPLE * 2  # resampling overshoot
    assert decoded.sample_rate == SR and 0.5 <= decoded.duration_s <= 600.0 + 1 / SR
    assert decoded.channels >= 1 and decoded.source_sample_rate > 0
    return decoded


@PROPERTY_SETTINGS
@given(st.binary(max_size=20_000))
def test_arbitrary_bytes(data: bytes) -> None:
    check(data)


@PROPERTY_SETTINGS
@given(
    prefix=st.sampled_from(
        [b"RIFF", b"RF64", b"fLaC", b"OggS", b"ID3", b"#!AMR\n", b"\x1a\x45\xdf\xa3"]
    ),
    rest=st.binary(max_size=8_000),
)
def test_arbitrary_bytes_behind_real_magic(prefix: bytes, rest: bytes) -> None:
    if prefix in (b"RIFF", b"RF64"):
        rest = rest[:4] + b"WAVE" + rest[4:]
    check(prefix + rest)


EXTREME_FIELDS = [0, 1, 2, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real file with 1-4 mutations, biased towards the header where the lies matter."""
    name = draw(st.sampled_from(sorted(seed_files())))
    data = bytearray(seed_files()[name])
    for _ in range(draw(st.integers(1, 4))):
        size = len(data)
        if size < 8:
            break
        header = draw(st.booleans())
        pos = draw(st.integers(0, min(size, 96) - 4 if header else size - 4))
        kind = draw(st.sampled_from(["flip", "field", "truncate", "insert", "delete", "repeat"]))
        if kind == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "field":
            value = draw(st.sampled_from(EXTREME_FIELDS) | st.integers(0, 0xFFFFFFFF))
            data[pos : pos + 4] = value.to_bytes(4, draw(st.sampled_from(["little", "big"])))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 256))]
        else:
            end = min(size, pos + draw(st.integers(1, 4096)))
            data[pos:pos] = data[pos:end] * draw(st.integers(1, 8))
    return bytes(data)


@PROPERTY_SETTINGS
@given(mutated())
def test_mutated_real_files(data: bytes) -> None:
    check(data)


def test_the_seed_files_themselves_decode() -> None:
    for name, data in seed_files().items():
        result = check(data)
        assert isinstance(result, DecodedAudio), (name, result)


def test_every_corpus_case_satisfies_the_property() -> None:
    for case in bad_audio_cases():
        assert isinstance(check(case.data), AudioError), case.name
