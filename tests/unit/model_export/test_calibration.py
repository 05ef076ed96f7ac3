"""Calibration inputs come from the runtime's own audio path; bad calibration data is a
CALIBRATION_INVALID that names the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from alertfusion.audio import decode_audio
from alertfusion.features import build_feature_images
from alertfusion.manifest import AudioPreprocessing
from model_export.calibration import (
    calibration_images,
    generated_texts,
    read_text_lines,
    recording_transcripts,
)
from model_export.errors import ExportError, ExportReason
from tests.conftest import SAMPLES

pytestmark = pytest.mark.unit

CFG = AudioPreprocessing()


def test_images_are_the_runtime_features_of_every_recording_plus_shifted_windows() -> None:
    cal = calibration_images(SAMPLES, CFG)
    assert cal.files == tuple(sorted(p.name for p in SAMPLES.glob("*.wav")))
    assert cal.images.shape[1:] == (1, 192, 64) and cal.images.dtype == np.float32
    assert len(cal.recording) == len(cal.images)
    for index, name in enumerate(cal.files):
        samples = decode_audio(SAMPLES / name, sample_rate=CFG.sample_rate).samples
        runtime = build_feature_images(samples, CFG).images
        mine = cal.images[cal.recording == index]
        # the first pass is exactly what the runtime computes; shifted passes add more
        np.testing.assert_array_equal(mine[: len(runtime)], runtime)
        assert len(mine) > len(runtime)


def test_subsampling_keeps_images_evenly() -> None:
    cal = calibration_images(SAMPLES, CFG, max_images=10)
    assert len(cal.images) == 10
    assert set(cal.recording.tolist()) == set(range(len(cal.files)))


def test_no_audio_or_no_directory_is_a_calibration_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not audio")
    with pytest.raises(ExportError) as info:
        calibration_images(tmp_path, CFG)
    assert info.value.reason == ExportReason.CALIBRATION_INVALID
    assert "no audio files" in info.value.message
    with pytest.raises(ExportError) as info:
        calibration_images(tmp_path / "missing", CFG)
    assert info.value.reason == ExportReason.CALIBRATION_INVALID


def test_an_undecodable_recording_is_named(tmp_path: Path) -> None:
    shutil.copy(SAMPLES / "ko-help-16k.wav", tmp_path / "a.wav")
    (tmp_path / "b.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    with pytest.raises(ExportError) as info:
        calibration_images(tmp_path, CFG)
    assert info.value.reason == ExportReason.CALIBRATION_INVALID
    assert "b.wav" in info.value.message


def test_transcripts_and_text_files(tmp_path: Path) -> None:
    assert len(recording_transcripts(SAMPLES)) == 4
    assert recording_transcripts(None) == [] and recording_transcripts(tmp_path) == []
    (tmp_path / "transcripts.json").write_text(json.dumps({"a.wav": 3}))
    with pytest.raises(ExportError) as info:
        recording_transcripts(tmp_path)
    assert info.value.reason == ExportReason.CALIBRATION_INVALID
    lines = tmp_path / "texts.txt"
    lines.write_text("첫 문장\n\n  둘째 문장  \n", encoding="utf-8")
    assert read_text_lines(lines) == ["첫 문장", "둘째 문장"]
    lines.write_text("\n\n")
    with pytest.raises(ExportError):
        read_text_lines(lines)


def test_generated_sentences_are_deterministic_and_cycle_through_the_themes() -> None:
    a = generated_texts(30, seed=5)
    assert a == generated_texts(30, seed=5)
    assert a != generated_texts(30, seed=6)
    assert [theme for _, theme in a[:12]] == list(range(6)) * 2
    assert all(text.strip() for text, _ in a)
