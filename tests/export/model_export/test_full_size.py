"""Full size, once: DenseNet-121 x2 and KoBERT-base checkpoints in the original formats ->
`python -m model_export bundle` -> ONNX logits equal to PyTorch's."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from alertfusion.manifest import AudioPreprocessing, Manifest
from alertfusion.text import TextEncoder
from model_export.calibration import calibration_images
from model_export.checkpoints import save_densenet_checkpoint, save_kobert_checkpoint
from model_export.densenet import DenseNet121, densenet_config
from model_export.kobert import KoBertClassifier, kobert_config
from model_export.onnx_export import (
    ort_session,
    run_audio,
    run_text,
    torch_audio_logits,
    torch_text_logits,
)
from model_export.tokenizer import train_demo_spm
from tests.conftest import SAMPLES
from tests.export.model_export.conftest import CliResult

pytestmark = [pytest.mark.export, pytest.mark.slow]


def test_full_size_round_trip_through_the_cli(
    run_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    torch.manual_seed(0)
    spm = train_demo_spm(tmp_path, vocab_size=8002, seed=0)
    binary = DenseNet121(densenet_config("full", num_classes=2)).eval()
    multiclass = DenseNet121(densenet_config("full", num_classes=6)).eval()
    text = KoBertClassifier(kobert_config("full")).eval()
    save_densenet_checkpoint(binary, tmp_path / "binary.pt")
    save_densenet_checkpoint(multiclass, tmp_path / "multiclass.pt")
    save_kobert_checkpoint(text, tmp_path / "kobert.pt")
    out = tmp_path / "bundle"
    result = run_cli(
        "bundle",
        "--audio-binary", tmp_path / "binary.pt",
        "--audio-multiclass", tmp_path / "multiclass.pt",
        "--text", tmp_path / "kobert.pt",
        "--spm", spm,
        "--out", out,
        "--quantize", "none",
    )  # fmt: skip
    assert result.code == 0, result.err
    manifest = Manifest.load(out / "manifest.json")
    assert manifest.text.vocab_size == 8002
    images = np.concatenate(
        [
            calibration_images(SAMPLES, AudioPreprocessing()).images[::6],
            np.random.default_rng(0).standard_normal((2, 1, 192, 64)).astype(np.float32),
        ]
    )
    for name, module in (("audio_binary", binary), ("audio_multiclass", multiclass)):
        got = run_audio(ort_session(out / getattr(manifest.models, name).file), images)
        np.testing.assert_allclose(got, torch_audio_logits(module, images), atol=1e-4)
    encoder = TextEncoder.from_file(out / "tokenizer.json", max_len=60)
    texts = ["살려주세요", "지갑을 도둑맞았어요 어떡해요", "오늘 날씨가 좋네요 " * 12]
    sequences = []
    for t in texts:
        encoded = encoder.encode(t)
        assert encoded is not None
        sequences.append(encoded.input_ids[0].tolist())
    got = run_text(ort_session(out / "text.onnx"), sequences, pad_id=manifest.text.pad_id)
    np.testing.assert_allclose(got, torch_text_logits(text, sequences), atol=1e-4)
    assert run_cli("verify", out).code == 0
