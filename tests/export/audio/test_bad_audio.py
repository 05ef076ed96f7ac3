"""Streamed resampling of long audio equals librosa.load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alertfusion.audio import decode_audio
from tests.unit.audio.helpers import FIXTURE_FILES, SR, librosa_load

pytestmark = pytest.mark.export


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.name)
def test_the_streamed_resampling_equals_librosa(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import alertfusion.audio

    monkeypatch.setattr(alertfusion.audio, "_ONESHOT_MAX_SAMPLES", 10_000)
    decoded = decode_audio(path, sample_rate=SR, min_seconds=0.0)
    np.testing.assert_array_equal(decoded.samples, librosa_load(path))
