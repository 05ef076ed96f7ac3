"""Decoding the fixtures to mono float32 at 44.1 kHz: equal to librosa.load(sr=44100, soxr_hq)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alertfusion.audio import DecodedAudio, decode_audio
from tests.unit.audio.helpers import FIXTURE_FILES, SR, librosa_load

pytestmark = pytest.mark.export


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.name)
def test_fixtures_decode_exactly_like_librosa(path: Path) -> None:
    decoded = decode_audio(path, sample_rate=SR, min_seconds=0.0)
    expected = librosa_load(path)
    assert isinstance(decoded, DecodedAudio)
    assert decoded.samples.dtype == np.float32 and decoded.samples.flags.c_contiguous
    assert decoded.samples.shape == expected.shape
    assert float(np.abs(decoded.samples - expected).max()) == 0.0
    assert decoded.sample_rate == SR and decoded.format == "wav"
    assert decoded.duration_s == pytest.approx(len(expected) / SR)
