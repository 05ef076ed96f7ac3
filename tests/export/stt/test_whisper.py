"""The Whisper speech-to-text family: a WhisperConfig model (no download) exported as an
encoder and a decoder step with a key/value cache decodes greedily (numpy) to exactly the
token ids of a greedy loop over the HF model itself; the front end is Whisper's own; the
offline-whisper recipe's demo bundle transcribes through the engine and the CLI, in 30 s
chunks; a tokenizer that does not fit is refused at load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from alertfusion.audio import DecodedAudio, decode_audio
from alertfusion.bundle import load_bundle
from alertfusion.cli import EXIT_OK
from alertfusion.cli import main as alertfusion_main
from alertfusion.engine import Engine
from alertfusion.errors import BundleError, ReasonCode
from alertfusion.manifest import MANIFEST_FILE
from alertfusion.recipe.graph import FeatureGraph
from model_export import whisper
from model_export.errors import ExportError, ExportReason
from model_export.progress import Progress
from model_export.recipe_build import load_recipe
from model_export.stt_demo import build_offline_demo
from tests.conftest import SAMPLES
from tests.recipe_bundles import RECIPES

pytestmark = [pytest.mark.export, pytest.mark.slow]

WHISPER = RECIPES / "emergency-voice-offline-whisper.json"


@pytest.fixture(scope="module")
def offline(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("offline-whisper") / "bundle"
    build_offline_demo(
        load_recipe(WHISPER), out, size="tiny", seed=0, quantize="none", threshold=0.9,
        calibration_audio=SAMPLES, fp32_fallback=False, force=False, progress=Progress(),
        checkpoints_out=None, base=tiny_bundle,
    )  # fmt: skip
    return out


def _model(vocab: int, init_std: float) -> Any:
    from transformers import WhisperForConditionalGeneration

    torch.manual_seed(0)
    config = whisper.whisper_config("tiny", vocab)
    config.init_std = init_std  # wider than the default: an untrained decoder that varies
    return WhisperForConditionalGeneration(config).eval()


def test_the_onnx_pair_decodes_to_pytorchs_token_ids(tmp_path: Path) -> None:
    model = _model(300, 0.3)
    encoder, decoder = tmp_path / "enc.onnx", tmp_path / "dec.onnx"
    whisper.export_whisper(model, encoder, decoder)
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((1, 80, 3000)).astype(np.float32) for _ in range(3)]
    prompt = [1, 2, 3, 4]
    reference = [whisper.torch_greedy(model, x, prompt, 0, 30) for x in inputs]
    assert len({t for ids in reference for t in ids}) > 3, "a decode that varies is compared"
    assert whisper.check_token_parity(model, encoder, decoder, inputs, prompt, 0, 30) == sum(
        len(ids) for ids in reference
    )


def test_parity_refuses_a_decoder_that_differs(tmp_path: Path) -> None:
    model = _model(300, 0.3)
    encoder, decoder = tmp_path / "enc.onnx", tmp_path / "dec.onnx"
    whisper.export_whisper(model, encoder, decoder)
    with torch.no_grad():
        # PyTorch's logits are now negated (its top token is the files' last), the files not
        model.model.decoder.layer_norm.weight.mul_(-1.0)
    x = np.random.default_rng(1).standard_normal((1, 80, 3000)).astype(np.float32)
    with pytest.raises(ExportError) as info:
        whisper.check_token_parity(model, encoder, decoder, [x], [1, 2, 3, 4], 0, 10)
    assert info.value.reason == ExportReason.PARITY_FAILED


def test_the_front_end_is_whispers_own() -> None:
    from transformers import WhisperFeatureExtractor

    recipe = load_recipe(WHISPER)
    y = decode_audio(SAMPLES / "ko-help-16k.wav", sample_rate=recipe.sample_rate).samples
    values = FeatureGraph(recipe).run(y, {"stt_input", "stt_waveform"})
    want = WhisperFeatureExtractor()(
        values["stt_waveform"], sampling_rate=16000, return_tensors="np"
    ).input_features[0]
    assert values["stt_input"].shape == want.shape == (80, 3000)
    np.testing.assert_allclose(values["stt_input"], want, atol=1e-4)


def test_the_engine_and_cli_transcribe_with_whisper(offline: Path, capsys: Any) -> None:
    engine = Engine.from_bundle(offline)
    assert engine.bundle.legacy is not None  # today's system plus a speech-to-text model
    heard = engine.transcribe(SAMPLES / "ko-help-16k.wav")
    assert heard.model == "stt" and 0 < heard.n_tokens <= 300  # 10 tokens/s of a 30 s chunk
    result = engine.classify(SAMPLES / "ko-help-16k.wav", gate="none")
    assert result.transcript is not None and result.transcript.source == "model"
    assert result.transcript.text == heard.text
    sample = str(SAMPLES / "ko-help-16k.wav")
    assert alertfusion_main(["transcribe", sample, "--bundle", str(offline), "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["text"] == heard.text


def test_long_recordings_are_transcribed_in_chunks(offline: Path, monkeypatch: Any) -> None:
    from alertfusion import stt_whisper

    engine = Engine.from_bundle(offline)
    rate = engine.spec.recipe.sample_rate
    y = decode_audio(SAMPLES / "ko-violence-long-16k.wav", sample_rate=rate).samples
    long = np.concatenate([y, y, y])[: 70 * rate]  # 70 s: chunks at 0, 25 and 50 s
    seen: list[int] = []
    real = stt_whisper.greedy

    def counted(*args: Any, **kwargs: Any) -> list[int]:
        seen.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(stt_whisper, "greedy", counted)
    heard = engine.transcribe(DecodedAudio(long, rate, rate, 1, "wav"))
    assert len(seen) == 3 and heard.n_tokens > 0


def test_a_tokenizer_that_does_not_fit_is_refused_at_load(offline: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(offline, copy)
    manifest = json.loads((copy / MANIFEST_FILE).read_text(encoding="utf-8"))
    entry = manifest["models"]["stt"]["alphabet"]
    entry["symbols"] += 1
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(BundleError) as info:
        load_bundle(copy)
    assert info.value.code == ReasonCode.BUNDLE_INVALID and "tokens" in info.value.message
    entry["symbols"] -= 1
    # a recipe asking for a language whose token the tokenizer lacks
    manifest["recipe"]["models"]["stt"]["transcription"]["language"] = "en"
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(BundleError) as info:
        load_bundle(copy)
    assert info.value.code == ReasonCode.BUNDLE_INVALID and "<|en|>" in info.value.message


def test_a_decoder_wider_than_the_tokenizer_is_refused_at_warm_up(
    offline: Path, tmp_path: Path
) -> None:
    from alertfusion.bundle_files import sha256_file

    copy = tmp_path / "bundle"
    shutil.copytree(offline, copy)
    manifest = json.loads((copy / MANIFEST_FILE).read_text(encoding="utf-8"))
    entry = manifest["models"]["stt"]
    wider = _model(entry["alphabet"]["symbols"] + 1, 0.02)
    whisper.export_whisper(wider, tmp_path / "enc.onnx", copy / entry["decoder"]["file"])
    decoder = copy / entry["decoder"]["file"]
    entry["decoder"].update(sha256=sha256_file(decoder), size_bytes=decoder.stat().st_size)
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    engine = Engine.from_bundle(copy)
    with pytest.raises(BundleError) as info:
        engine.warm_up()
    assert info.value.code == ReasonCode.BUNDLE_INVALID and "tokenizer has" in info.value.message
