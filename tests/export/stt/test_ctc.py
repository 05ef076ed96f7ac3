"""The CTC speech-to-text family: a DeepSpeech2-style PyTorch model exported to ONNX with a
dynamic time axis decodes (greedy, in numpy) to exactly PyTorch's token ids; the offline
recipe's demo bundle transcribes through the engine and the CLI with no text from the client,
and an alphabet that does not fit the model is refused at build and at load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from alertfusion.bundle import load_bundle
from alertfusion.bundle_files import sha256_file
from alertfusion.cli import EXIT_OK
from alertfusion.cli import main as alertfusion_main
from alertfusion.engine import Engine
from alertfusion.errors import BundleError, ReasonCode
from alertfusion.manifest import MANIFEST_FILE
from model_export import ctc
from model_export.errors import ExportError, ExportReason
from model_export.recipe_build import load_recipe, onnx_shapes
from model_export.stt_bundle import stt_inputs
from tests.conftest import SAMPLES
from tests.recipe_bundles import RECIPES

pytestmark = [pytest.mark.export, pytest.mark.slow]

OFFLINE = RECIPES / "emergency-voice-offline.json"


@pytest.fixture
def offline(offline_bundle: Path) -> Path:
    """The offline recipe's tiny demo bundle (tests/conftest.py), read only."""
    return offline_bundle


def test_onnx_decodes_to_pytorchs_token_ids(tmp_path: Path) -> None:
    recipe = load_recipe(OFFLINE)
    inputs = stt_inputs(recipe, "stt", SAMPLES)
    # the same recordings cut shorter: the time axis is dynamic
    inputs += [x[..., : x.shape[-1] // 3] for x in inputs]
    symbols = ctc.demo_alphabet("tiny")
    torch.manual_seed(1)
    model = ctc.DeepSpeech2(len(symbols), bins=inputs[0].shape[2], size="tiny").eval()
    path = tmp_path / "stt.onnx"
    ctc.export_ctc(model, inputs[0].shape[2], path)
    shapes, output = onnx_shapes(path, ctc.OUTPUT)
    assert shapes[ctc.INPUT][2] == 161 and shapes[ctc.INPUT][3] is None
    assert output[1] is None and output[2] == len(symbols)
    worst, tokens = ctc.check_token_parity(model, path, inputs)
    assert worst < 1e-4
    assert tokens > 0, "an untrained model that emits nothing would make the check empty"


def test_parity_refuses_a_model_that_decodes_differently(tmp_path: Path) -> None:
    symbols = ctc.demo_alphabet("tiny")
    torch.manual_seed(0)
    model = ctc.DeepSpeech2(len(symbols), size="tiny").eval()
    path = tmp_path / "stt.onnx"
    ctc.export_ctc(model, 161, path)
    with torch.no_grad():
        model.fc.bias[5] += 50.0  # PyTorch now emits symbol 5 everywhere, the file does not
    x = np.random.default_rng(0).standard_normal((1, 1, 161, 120)).astype(np.float32)
    with pytest.raises(ExportError) as info:
        ctc.check_token_parity(model, path, [x])
    assert info.value.reason == ExportReason.PARITY_FAILED


def test_an_alphabet_that_does_not_fit_is_refused_at_build() -> None:
    symbols = ctc.demo_alphabet("tiny")
    model = ctc.DeepSpeech2(len(symbols) + 1, size="tiny").eval()
    with pytest.raises(ExportError) as info:
        ctc.check_alphabet(model, symbols, 161)
    assert info.value.reason == ExportReason.VOCAB_MISMATCH


def test_resample_node_matches_librosa() -> None:
    import librosa

    from alertfusion.audio import decode_audio
    from alertfusion.recipe.graph import FeatureGraph

    recipe = load_recipe(OFFLINE)
    y = decode_audio(SAMPLES / "ko-help-16k.wav", sample_rate=recipe.sample_rate).samples
    got = FeatureGraph(recipe).run(y, {"stt_waveform"})["stt_waveform"]
    want = librosa.resample(y, orig_sr=recipe.sample_rate, target_sr=16000, res_type="soxr_hq")
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_front_end_matches_the_sibling_description() -> None:
    """16 kHz, symmetric Hamming 320 / hop 160, log1p |STFT| (librosa.stft), z-scored with
    torch.std's unbiased estimate."""
    import librosa
    import scipy.signal

    from alertfusion.audio import decode_audio
    from alertfusion.recipe.graph import FeatureGraph

    recipe = load_recipe(OFFLINE)
    y = decode_audio(SAMPLES / "ko-help-16k.wav", sample_rate=recipe.sample_rate).samples
    values = FeatureGraph(recipe).run(y, {"stt_input", "stt_waveform"})
    y16 = values["stt_waveform"]
    window = scipy.signal.get_window("hamming", 320, fftbins=False)
    spect = np.log1p(np.abs(librosa.stft(y16, n_fft=320, hop_length=160, window=window,
                                         pad_mode="constant")))  # fmt: skip
    t = torch.from_numpy(spect.astype(np.float64))
    want = ((t - t.mean()) / t.std()).numpy()
    np.testing.assert_allclose(values["stt_input"], want, atol=1e-4)


def test_the_engine_transcribes_when_the_client_gives_no_text(offline: Path) -> None:
    engine = Engine.from_bundle(offline)
    heard = engine.transcribe(SAMPLES / "ko-violence-long-16k.wav")
    result = engine.classify(SAMPLES / "ko-violence-long-16k.wav")
    assert result.transcript is not None
    assert result.transcript.source == "model" and result.transcript.model == "stt"
    assert result.transcript.text == heard.text
    assert result.transcript.n_tokens == heard.n_tokens
    given = engine.classify(SAMPLES / "ko-violence-long-16k.wav", text="살려주세요")
    assert given.transcript is not None and given.transcript.source == "client"
    assert given.transcript.text == "살려주세요"


def test_both_engine_paths_transcribe_alike(offline: Path) -> None:
    """The offline recipe is today's system plus a speech-to-text model: the engine serves it
    on its optimised path (the API's manifest readers work); the generic recipe path
    transcribes the same way."""
    from dataclasses import replace

    bundle = load_bundle(offline)
    assert bundle.legacy is not None
    fast = Engine(bundle).classify(SAMPLES / "ko-help-16k.wav", gate="none")
    generic = Engine(replace(bundle, legacy=None)).classify(
        SAMPLES / "ko-help-16k.wav", gate="none"
    )
    assert fast.transcript is not None and generic.transcript is not None
    assert fast.transcript.source == generic.transcript.source == "model"
    assert fast.transcript.text == generic.transcript.text
    assert fast.label == generic.label and fast.text.status == generic.text.status


def test_silence_gives_an_empty_transcript_not_an_error(offline: Path, monkeypatch: Any) -> None:
    from alertfusion.audio import DecodedAudio
    from alertfusion.stt import Transcriber

    engine = Engine.from_bundle(offline)
    rate = engine.spec.recipe.sample_rate
    silence = DecodedAudio(np.zeros(2 * rate, dtype=np.float32), rate, rate, 1, "wav")
    # the untrained model reads silence as it likes: no error, at most the runaway cut
    assert engine.transcribe(silence).n_tokens <= 2 * 30
    assert engine.classify(silence).transcript is not None
    # a model that hears nothing (blank on every frame): an empty transcript, the no-text path
    symbols = len(engine.transcriber().symbols)

    def blank(self: Transcriber, samples: np.ndarray) -> np.ndarray:
        out = np.zeros((40, symbols), dtype=np.float32)
        out[:, 0] = 1.0
        return out

    monkeypatch.setattr(Transcriber, "logits", blank)
    result = engine.classify(silence)
    assert result.transcript is not None
    assert result.transcript.source == "model" and result.transcript.text == ""
    assert result.transcript.n_tokens == 0
    assert result.text.status == "skipped" and result.text.skipped_reason == "NO_TEXT"
    assert (result.text.detail or "").startswith("the speech-to-text model heard no words")


def test_a_runaway_decoder_is_cut(offline: Path, monkeypatch: Any) -> None:
    from alertfusion.audio import DecodedAudio
    from alertfusion.stt import Transcriber

    engine = Engine.from_bundle(offline)
    rate = engine.spec.recipe.sample_rate
    audio = DecodedAudio(np.zeros(rate, dtype=np.float32), rate, rate, 1, "wav")
    symbols = len(engine.transcriber().symbols)

    def chatter(self: Transcriber, samples: np.ndarray) -> np.ndarray:
        out = np.zeros((100, symbols), dtype=np.float32)
        out[np.arange(100), 2 + np.arange(100) % 2] = 1.0  # a new symbol on every frame
        return out

    monkeypatch.setattr(Transcriber, "logits", chatter)
    heard = engine.transcribe(audio)
    assert heard.n_tokens == 30 and heard.cut == 70  # 30 tokens per second of audio


def test_the_cli_transcribes_and_classifies_without_text(offline: Path, capsys: Any) -> None:
    sample = str(SAMPLES / "ko-help-16k.wav")
    assert alertfusion_main(["transcribe", sample, "--bundle", str(offline), "--json"]) == EXIT_OK
    captured = capsys.readouterr()
    record = json.loads(captured.out)
    assert record["model"] == "stt" and isinstance(record["text"], str)
    assert "noise" in captured.err
    assert alertfusion_main(["classify", sample, "--bundle", str(offline), "--json"]) == EXIT_OK
    result = json.loads(capsys.readouterr().out)
    assert result["transcript"]["source"] == "model"
    assert result["transcript"]["text"] == record["text"]


def test_a_bundle_without_a_speech_to_text_model_cannot_transcribe(
    tiny_bundle: Path, capsys: Any
) -> None:
    sample = str(SAMPLES / "ko-help-16k.wav")
    assert alertfusion_main(["transcribe", sample, "--bundle", str(tiny_bundle)]) == 1
    assert "no speech-to-text model" in capsys.readouterr().err


def test_an_alphabet_that_does_not_fit_is_refused_at_load(offline: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(offline, copy)
    manifest = json.loads((copy / MANIFEST_FILE).read_text(encoding="utf-8"))
    entry = manifest["models"]["stt"]["alphabet"]
    path = copy / entry["file"]
    symbols = json.loads(path.read_text(encoding="utf-8"))["symbols"]
    path.write_text(json.dumps({"symbols": symbols[:-1]}, ensure_ascii=False), encoding="utf-8")
    entry["sha256"] = sha256_file(path)
    entry["size_bytes"] = path.stat().st_size
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(BundleError) as info:
        load_bundle(copy)
    assert info.value.code == ReasonCode.BUNDLE_INVALID and "symbols" in info.value.message
    entry["symbols"] = len(symbols) - 1  # now the manifest agrees with the file, not the model
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(BundleError) as info:
        load_bundle(copy)
    assert info.value.code == ReasonCode.BUNDLE_INVALID and "models.stt" in info.value.message


def test_predict_without_text_transcribes(offline: Path) -> None:
    """The API (the Lambda function and the EC2 fallback's server) on the offline bundle:
    `/predict` without `text_input` answers with the model's transcript, and with it the
    client's."""
    from fastapi.testclient import TestClient

    from functions.api.app import create_app
    from tests.integration.api.conftest import settings, with_engine

    engine = Engine.from_bundle(offline)
    app = with_engine(create_app(settings()), engine)
    audio = (SAMPLES / "ko-help-16k.wav").read_bytes()
    with TestClient(app, raise_server_exceptions=False) as client:
        files = {"audio_file": ("help.wav", audio, "audio/wav")}
        body = client.post("/predict", files=files).json()
        assert body["transcript"]["source"] == "model", body
        assert body["transcript"]["model"] == "stt"
        given = client.post("/predict", files=files, data={"text_input": "도와주세요"}).json()
        assert given["transcript"] == {
            "source": "client", "text": "도와주세요", "model": None, "n_tokens": None, "ms": None,
        }  # fmt: skip
        assert client.get("/readyz").status_code == 200


def test_the_self_check_covers_the_speech_to_text_model(offline: Path, capsys: Any) -> None:
    bundle = load_bundle(offline)
    assert bundle.spec.golden is not None and bundle.spec.golden.inputs["stt"] == 1
    check = Engine(bundle).self_check()
    (stt,) = [c for c in check.models if c.name == "stt"]
    assert check.passed and len(stt.judged.decisions) > 100  # one decision per output frame
    assert alertfusion_main(["selfcheck", "--bundle", str(offline)]) == EXIT_OK


def test_a_deployment_of_the_bundle_never_starts_transcribe(
    offline: Path, tiny_bundle: Path
) -> None:
    """infra sets TRANSCRIPT_SOURCE from the baked bundle's recipe (the starter then starts no
    Transcribe job); an S3 bundle is not read at synth and keeps Amazon Transcribe."""
    from infra.config import InfraConfig
    from infra.constructs.function_support import transcript_source

    def source(bundle: str) -> str:
        return transcript_source(InfraConfig.model_construct(bundle=bundle))

    assert source(str(offline)) == "model"
    assert source(str(tiny_bundle)) == "aws_transcribe"
    assert source("s3://models-example/alertfusion/offline/") == "aws_transcribe"
