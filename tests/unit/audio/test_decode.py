"""Decoding to mono float32 at 44.1 kHz: sources, metadata, limits (librosa parity: export)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alertfusion.audio import decode_audio
from alertfusion.errors import AudioError, ReasonCode
from tests.unit.audio.helpers import FIXTURE_FILES, SR

pytestmark = pytest.mark.unit


def test_bytes_and_path_decode_the_same(tmp_path: Path) -> None:
    path = FIXTURE_FILES[0]
    from_path = decode_audio(path, sample_rate=SR)
    for source in (path.read_bytes(), bytearray(path.read_bytes()), memoryview(path.read_bytes())):
        np.testing.assert_array_equal(
            decode_audio(source, sample_rate=SR).samples, from_path.samples
        )
    np.testing.assert_array_equal(
        decode_audio(str(path), sample_rate=SR).samples, from_path.samples
    )


def test_source_metadata() -> None:
    stereo = next(p for p in FIXTURE_FILES if "stereo" in p.name)
    decoded = decode_audio(stereo, sample_rate=SR)
    assert (decoded.channels, decoded.source_sample_rate) == (2, 44_100)
    help_16k = next(p for p in FIXTURE_FILES if p.name == "ko-help-16k.wav")
    decoded = decode_audio(help_16k, sample_rate=SR)
    assert (decoded.channels, decoded.source_sample_rate) == (1, 16_000)


def test_the_short_fixture_is_too_short() -> None:
    short = next(p for p in FIXTURE_FILES if p.name == "short-0.3s.wav")
    with pytest.raises(AudioError) as info:
        decode_audio(short, sample_rate=SR)
    assert info.value.code == ReasonCode.TOO_SHORT


def test_near_silence_fixture_decodes() -> None:
    silence = next(p for p in FIXTURE_FILES if p.name == "silence-3s.wav")
    decoded = decode_audio(silence, sample_rate=SR)
    assert decoded.duration_s == pytest.approx(3.0)
    assert float(np.abs(decoded.samples).max()) < 1e-3  # +-1 LSB of dither


def test_digital_silence_is_valid_audio() -> None:
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.zeros(16_000, np.int16), 16_000, format="WAV", subtype="PCM_16")
    decoded = decode_audio(buf.getvalue(), sample_rate=SR)
    assert decoded.duration_s == pytest.approx(1.0)
    assert not decoded.samples.any()


def test_size_limit_is_checked_before_decoding(tmp_path: Path) -> None:
    data = FIXTURE_FILES[0].read_bytes()
    for source in (data, FIXTURE_FILES[0]):
        with pytest.raises(AudioError) as info:
            decode_audio(source, sample_rate=SR, max_bytes=len(data) - 1)
        assert info.value.code == ReasonCode.FILE_TOO_LARGE
