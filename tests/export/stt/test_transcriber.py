"""`python -m model_export transcriber`: a trained DeepSpeech2 state dict (with its alphabet)
or a Hugging Face Whisper directory added to an emergency-voice bundle. Tiny checkpoints are
made here (no real ones are available); the bundle loads, transcribes to the PyTorch model's
own greedy tokens, verifies, carries no demo marks, and mismatched checkpoints are refused
with their reason codes."""

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
from alertfusion.manifest import MANIFEST_FILE
from alertfusion.stt import ids_to_text, whisper_specials
from model_export import ctc, whisper
from model_export.cli import EXIT_USER_ERROR
from model_export.cli import main as export_main
from model_export.progress import Progress
from model_export.recipe_build import load_recipe
from model_export.recipe_demo import upgrade_to_v2
from model_export.stt_bundle import stt_inputs
from model_export.stt_demo import NOISE_NOTE
from tests.conftest import SAMPLES
from tests.recipe_bundles import RECIPES

pytestmark = [pytest.mark.export, pytest.mark.slow]

CTC_RECIPE = RECIPES / "emergency-voice-offline.json"
WHISPER_RECIPE = RECIPES / "emergency-voice-offline-whisper.json"
SAMPLE = "ko-help-16k.wav"
#: a checkpoint's own sizes (conv channels, LSTM hidden, LSTM layers): neither named size
CTC_DIMS = (3, 24, 2)


@pytest.fixture(scope="module")
def calibration(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One recording: the parity check's input."""
    out = tmp_path_factory.mktemp("calibration")
    shutil.copyfile(SAMPLES / SAMPLE, out / SAMPLE)
    return out


@pytest.fixture(scope="module")
def ctc_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    """A tiny DeepSpeech2 state dict (torch.save), its alphabet as text (one symbol a line,
    the space symbol included) and the model."""
    out = tmp_path_factory.mktemp("ctc-checkpoint")
    symbols = ctc.demo_alphabet("tiny")
    torch.manual_seed(3)
    model = ctc.DeepSpeech2(len(symbols), bins=161, size=CTC_DIMS).eval()
    torch.save(model.state_dict(), out / "ds2.pt")
    (out / "alphabet.txt").write_text("\n".join(symbols) + "\n", encoding="utf-8")
    return out / "ds2.pt", out / "alphabet.txt", model


@pytest.fixture(scope="module")
def whisper_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A tiny WhisperConfig model saved with save_pretrained and a tokenizer.json beside it."""
    from tokenizers import Tokenizer
    from transformers import WhisperForConditionalGeneration

    out = tmp_path_factory.mktemp("whisper-checkpoint")
    whisper.demo_tokenizer("tiny", out / "tokenizer.json")
    vocab = Tokenizer.from_file(str(out / "tokenizer.json")).get_vocab_size(with_added_tokens=True)
    torch.manual_seed(0)
    config = whisper.whisper_config("tiny", vocab)
    config.init_std = 0.3  # wider than the default: a decoder whose tokens vary
    model = WhisperForConditionalGeneration(config).eval()
    model.save_pretrained(out)
    return out, model


@pytest.fixture(scope="module")
def trained_v2_base(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny emergency-voice bundle as manifest v2, its manifest marked trained."""
    out = tmp_path_factory.mktemp("v2-base") / "bundle"
    shutil.copytree(tiny_bundle, out)
    upgrade_to_v2(out, load_recipe(RECIPES / "emergency-voice.json"), Progress())
    manifest = json.loads((out / MANIFEST_FILE).read_text(encoding="utf-8"))
    manifest["trained"] = True
    (out / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    return out


def _transcriber(recipe: Path, base: Path, out: Path, calibration: Path, *args: str) -> int:
    """The command, in fp32 unless `args` says --quantize (the token-exact checks compare
    fp32 with PyTorch)."""
    quantize = [] if "--quantize" in args else ["--quantize", "none"]
    return export_main(
        ["transcriber", "--recipe", str(recipe), "--base", str(base), *args, *quantize,
         "--calibration-audio", str(calibration), "--out", str(out)]
    )  # fmt: skip


@pytest.fixture(scope="module")
def ctc_bundle(
    tiny_bundle: Path, ctc_checkpoint: tuple[Path, Path, Any], calibration: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:  # fmt: skip
    """The offline recipe's bundle: the v1 tiny demo bundle plus the DeepSpeech2 checkpoint."""
    out = tmp_path_factory.mktemp("ctc-bundle") / "bundle"
    ckpt, alphabet, _ = ctc_checkpoint
    code = _transcriber(
        CTC_RECIPE, tiny_bundle, out, calibration, "--ctc", str(ckpt), "--alphabet", str(alphabet)
    )
    assert code == EXIT_OK
    return out


@pytest.fixture(scope="module")
def whisper_bundle(
    trained_v2_base: Path, whisper_checkpoint: tuple[Path, Any], calibration: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:  # fmt: skip
    """The offline-whisper recipe's bundle: a v2 base plus the Whisper checkpoint."""
    out = tmp_path_factory.mktemp("whisper-bundle") / "bundle"
    directory, _ = whisper_checkpoint
    code = _transcriber(
        WHISPER_RECIPE, trained_v2_base, out, calibration, "--whisper", str(directory)
    )
    assert code == EXIT_OK
    return out


def _manifest(bundle: Path) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads((bundle / MANIFEST_FILE).read_text(encoding="utf-8"))
    return raw


def _assert_no_demo_marks(bundle: Path, base: Path, checkpoint: Path) -> None:
    manifest, before = _manifest(bundle), _manifest(base)
    assert manifest["trained"] is before["trained"]  # the base's flag, as it was
    assert NOISE_NOTE not in manifest["description"]
    assert "demo" not in manifest["producer"]
    assert manifest["producer"]["stt_checkpoint"].endswith(sha256_file(checkpoint))


def _assert_verifies(bundle: Path, capsys: Any) -> None:
    files = load_bundle(bundle).spec.files()
    assert all(sha256_file(bundle / name) == digest for name, digest in files.items())
    assert export_main(["verify", str(bundle)]) == EXIT_OK
    assert "OK (manifest v2)" in capsys.readouterr().out


def test_a_ctc_checkpoint_transcribes_to_its_own_greedy_tokens(
    ctc_bundle: Path, ctc_checkpoint: tuple[Path, Path, Any], tiny_bundle: Path,
    calibration: Path, capsys: Any,
) -> None:  # fmt: skip
    ckpt, _, model = ctc_checkpoint
    symbols = ctc.demo_alphabet("tiny")
    (x,) = stt_inputs(load_recipe(CTC_RECIPE), "stt", calibration)
    with torch.no_grad():
        want = ctc.torch_greedy(model(torch.from_numpy(x))[0])
    heard = Engine.from_bundle(ctc_bundle).transcribe(SAMPLES / SAMPLE)
    assert heard.cut == 0 and len(set(want)) > 3, "a decode that varies is compared"
    assert list(heard.ids) == want
    assert heard.text == ids_to_text(want, symbols) != ""
    sample = str(SAMPLES / SAMPLE)
    assert alertfusion_main(["transcribe", sample, "--bundle", str(ctc_bundle), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["text"] == heard.text
    assert "noise" not in captured.err  # an untrained base, but a trained speech model
    _assert_no_demo_marks(ctc_bundle, tiny_bundle, ckpt)
    _assert_verifies(ctc_bundle, capsys)


def test_a_whisper_checkpoint_transcribes_to_its_own_greedy_tokens(
    whisper_bundle: Path, whisper_checkpoint: tuple[Path, Any], trained_v2_base: Path,
    calibration: Path, capsys: Any,
) -> None:  # fmt: skip
    from tokenizers import Tokenizer

    from alertfusion.stt_whisper import CHUNK_SECONDS

    directory, model = whisper_checkpoint
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    *prompt, end = (whisper.token_id(tokenizer, t) for t in whisper_specials("ko"))
    recipe = load_recipe(WHISPER_RECIPE)
    (x,) = stt_inputs(recipe, "stt", calibration)
    engine = Engine.from_bundle(whisper_bundle)
    assert engine.bundle.legacy is not None  # today's system plus a speech-to-text model
    heard = engine.transcribe(SAMPLES / SAMPLE)
    transcription = recipe.models["stt"].transcription
    assert transcription is not None
    limit = min(448 - len(prompt), int(transcription.max_tokens_per_second * CHUNK_SECONDS))
    want = whisper.torch_greedy(model, x, prompt, end, limit)
    assert len(set(want)) > 3, "a decode that varies is compared"
    assert list(heard.ids) == want
    assert heard.text == " ".join(tokenizer.decode(want, skip_special_tokens=True).split()) != ""
    sample = str(SAMPLES / SAMPLE)
    assert alertfusion_main(["transcribe", sample, "--bundle", str(whisper_bundle), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["text"] == heard.text
    assert _selfcheck(whisper_bundle, capsys)["stt"]["quantization"] == "none"
    _assert_no_demo_marks(whisper_bundle, trained_v2_base, directory / "model.safetensors")
    _assert_verifies(whisper_bundle, capsys)


def test_a_checkpoint_of_the_other_family_is_refused(
    tiny_bundle: Path, ctc_checkpoint: tuple[Path, Path, Any],
    whisper_checkpoint: tuple[Path, Any], calibration: Path, tmp_path: Path, capsys: Any,
) -> None:  # fmt: skip
    ckpt, alphabet, _ = ctc_checkpoint
    out = tmp_path / "bundle"
    code = _transcriber(CTC_RECIPE, tiny_bundle, out, calibration, "--whisper",
                        str(whisper_checkpoint[0]))  # fmt: skip
    assert code == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "error: BUNDLE_INVALID" in err and "'ctc'" in err and not out.exists()
    code = _transcriber(WHISPER_RECIPE, tiny_bundle, out, calibration, "--ctc", str(ckpt),
                        "--alphabet", str(alphabet))  # fmt: skip
    assert code == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "error: BUNDLE_INVALID" in err and "'whisper'" in err and not out.exists()


def test_an_alphabet_that_does_not_fit_is_refused(
    tiny_bundle: Path, ctc_checkpoint: tuple[Path, Path, Any], calibration: Path,
    tmp_path: Path, capsys: Any,
) -> None:  # fmt: skip
    ckpt, alphabet, _ = ctc_checkpoint
    short = tmp_path / "alphabet.json"
    short.write_text(json.dumps(ctc.demo_alphabet("tiny")[:-1]), encoding="utf-8")
    out = tmp_path / "bundle"
    code = _transcriber(CTC_RECIPE, tiny_bundle, out, calibration, "--ctc", str(ckpt),
                        "--alphabet", str(short))  # fmt: skip
    assert code == EXIT_USER_ERROR
    assert "error: VOCAB_MISMATCH" in capsys.readouterr().err and not out.exists()


def test_a_tokenizer_that_does_not_fit_is_refused(
    tiny_bundle: Path, whisper_checkpoint: tuple[Path, Any], calibration: Path,
    tmp_path: Path, capsys: Any,
) -> None:  # fmt: skip
    from transformers import WhisperForConditionalGeneration

    directory, model = whisper_checkpoint
    wider = tmp_path / "wider"
    wider_model = WhisperForConditionalGeneration(
        whisper.whisper_config("tiny", model.config.vocab_size + 1)
    )
    wider_model.save_pretrained(wider)
    shutil.copyfile(directory / "tokenizer.json", wider / "tokenizer.json")
    out = tmp_path / "bundle"
    code = _transcriber(WHISPER_RECIPE, tiny_bundle, out, calibration, "--whisper", str(wider))
    assert code == EXIT_USER_ERROR
    assert "error: VOCAB_MISMATCH" in capsys.readouterr().err and not out.exists()


def test_checkpoints_that_do_not_fit_the_model_are_refused(
    tiny_bundle: Path, ctc_checkpoint: tuple[Path, Path, Any],
    whisper_checkpoint: tuple[Path, Any], calibration: Path, tmp_path: Path, capsys: Any,
) -> None:  # fmt: skip
    from safetensors.torch import load_file, save_file

    ckpt, alphabet, model = ctc_checkpoint
    # a DeepSpeech2 of another front end (81 frequency rows, not the recipe's 161)
    other = ctc.DeepSpeech2(len(ctc.demo_alphabet("tiny")), bins=81, size=CTC_DIMS)
    torch.save(other.state_dict(), tmp_path / "other.pt")
    # a state dict with a key missing
    state = model.state_dict()
    del state["norm.weight"]
    torch.save(state, tmp_path / "partial.pt")
    out = tmp_path / "bundle"
    for bad in ("other.pt", "partial.pt"):
        code = _transcriber(CTC_RECIPE, tiny_bundle, out, calibration, "--ctc",
                            str(tmp_path / bad), "--alphabet", str(alphabet))  # fmt: skip
        assert code == EXIT_USER_ERROR
        assert "error: CHECKPOINT_MISMATCH" in capsys.readouterr().err, bad
    # a Whisper directory whose weights lack a tensor (from_pretrained would initialise it)
    directory, _ = whisper_checkpoint
    partial = tmp_path / "whisper"
    shutil.copytree(directory, partial)
    weights = load_file(partial / "model.safetensors")
    del weights["model.decoder.layers.0.fc1.weight"]
    save_file(weights, partial / "model.safetensors", metadata={"format": "pt"})
    code = _transcriber(WHISPER_RECIPE, tiny_bundle, out, calibration, "--whisper", str(partial))
    assert code == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "error: CHECKPOINT_MISMATCH" in err and "fc1" in err and not out.exists()


def test_a_base_that_already_transcribes_is_refused(
    ctc_bundle: Path, ctc_checkpoint: tuple[Path, Path, Any], calibration: Path,
    tmp_path: Path, capsys: Any,
) -> None:  # fmt: skip
    ckpt, alphabet, _ = ctc_checkpoint
    out = tmp_path / "bundle"
    code = _transcriber(CTC_RECIPE, ctc_bundle, out, calibration, "--ctc", str(ckpt),
                        "--alphabet", str(alphabet))  # fmt: skip
    assert code == EXIT_USER_ERROR
    assert "already has a speech-to-text model" in capsys.readouterr().err


def test_alphabet_files_are_read_as_written(tmp_path: Path) -> None:
    from model_export.errors import ExportError, ExportReason

    symbols = ["_", " ", "가", "나"]
    ctc.write_alphabet(symbols, tmp_path / "a.json")
    (tmp_path / "list.json").write_text(json.dumps(symbols), encoding="utf-8")
    (tmp_path / "a.txt").write_text("_\n \n가\n나\n\n", encoding="utf-8")
    for name in ("a.json", "list.json", "a.txt"):
        assert ctc.read_alphabet(tmp_path / name) == symbols, name
    for text in ("_\n가\n가\n", "_\n\n가\n", "_\n"):  # twice, an empty symbol, too few
        (tmp_path / "bad.txt").write_text(text, encoding="utf-8")
        with pytest.raises(ExportError) as info:
            ctc.read_alphabet(tmp_path / "bad.txt")
        assert info.value.reason == ExportReason.TOKENIZER_INVALID, repr(text)


def test_an_int8_ctc_bundle_is_judged_by_margins_and_keeps_its_fp32_fallback(
    tiny_bundle: Path, ctc_checkpoint: tuple[Path, Path, Any], calibration: Path,
    tmp_path: Path, capsys: Any,
) -> None:  # fmt: skip
    """Dynamic int8 of the DeepSpeech2: its agreement with fp32 on every calibration frame is
    in the manifest, the serving CPU's self-check judges it on the golden row (fp32's logits),
    and the fp32 graph kept beside it decodes to PyTorch's own tokens."""
    from alertfusion.cli import main as cli

    ckpt, alphabet, model = ctc_checkpoint
    out = tmp_path / "bundle"
    int8 = ("--quantize", "int8", "--fp32-fallback")
    code = _transcriber(CTC_RECIPE, tiny_bundle, out, calibration, "--ctc", str(ckpt),
                        "--alphabet", str(alphabet), *int8)  # fmt: skip
    assert code == EXIT_OK
    entry = _manifest(out)["models"]["stt"]
    report = entry["quantization_report"]
    assert entry["quantization"] == "int8_dynamic" and report["method"] == "dynamic"
    assert report["n_decisive"] > 0 and report["decisive_agreement"] >= report["threshold"]
    assert report["n_inputs"] == report["n_decisive"] + report["near_ties"]
    fallback = out / entry["fp32_fallback"]["file"]
    assert (out / entry["file"]).stat().st_size < fallback.stat().st_size
    _assert_verifies(out, capsys)
    assert cli(["selfcheck", "--bundle", str(out), "--json"]) == EXIT_OK
    checks = {c["model"]: c for c in json.loads(capsys.readouterr().out)["models"]}
    assert checks["stt"]["quantization"] == "int8_dynamic" and checks["stt"]["passed"]
    engine = Engine.from_bundle(out)
    assert engine.transcribe(SAMPLES / SAMPLE).cut == 0
    engine.sessions.use_fallback(["stt"])
    (x,) = stt_inputs(load_recipe(CTC_RECIPE), "stt", calibration)
    with torch.no_grad():
        want = ctc.torch_greedy(model(torch.from_numpy(x))[0])
    assert list(engine.transcribe(SAMPLES / SAMPLE).ids) == want


def test_an_int8_whisper_bundle_is_judged_along_fp32s_tokens(
    tiny_bundle: Path, calibration: Path, tmp_path: Path, capsys: Any
) -> None:
    """Whisper's encoder and decoder step in int8, judged position by position on the next
    token along fp32's greedy tokens. The model is made trained-like (a few tokens' embedding
    rows, tied to the output projection, scaled up) so that fp32's choices have margins."""
    from tokenizers import Tokenizer
    from transformers import WhisperForConditionalGeneration

    directory = tmp_path / "whisper"
    directory.mkdir()
    whisper.demo_tokenizer("tiny", directory / "tokenizer.json")
    vocab = Tokenizer.from_file(str(directory / "tokenizer.json")).get_vocab_size(
        with_added_tokens=True
    )
    torch.manual_seed(0)
    config = whisper.whisper_config("tiny", vocab)
    config.init_std = 0.3
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.model.decoder.embed_tokens.weight[10:14] *= 8
    model.save_pretrained(directory)
    out = tmp_path / "bundle"
    code = _transcriber(WHISPER_RECIPE, tiny_bundle, out, calibration, "--whisper",
                        str(directory), "--quantize", "int8")  # fmt: skip
    assert code == EXIT_OK
    entry = _manifest(out)["models"]["stt"]
    report = entry["quantization_report"]
    assert entry["quantization"] == "int8_dynamic" and entry.get("fp32_fallback") is None
    assert report["n_decisive"] > 0 and report["decisive_agreement"] >= report["threshold"]
    assert not list(out.glob("*.fp32.onnx"))
    _assert_verifies(out, capsys)
    assert Engine.from_bundle(out).transcribe(SAMPLES / SAMPLE).text != ""
    # the golden row: fp32's next tokens along its own greedy ones, judged here in int8
    assert _selfcheck(out, capsys)["stt"]["decisive"] > 0
    # the same row with fp32's choice at one position moved far to another token: the int8
    # model's answer there is now a real disagreement, and the bundle does not pass
    golden = out / _manifest(out)["golden"]["file"]
    with np.load(golden) as data:
        arrays = {k: data[k] for k in data.files}
    row = arrays["stt/fp32"][0, 0]
    row[int(np.argsort(row)[-2])] = row.max() + 50.0
    with golden.open("wb") as f:
        np.savez_compressed(f, **arrays)
    manifest = _manifest(out)
    manifest["golden"].update(sha256=sha256_file(golden), size_bytes=golden.stat().st_size)
    (out / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    assert alertfusion_main(["selfcheck", "--bundle", str(out), "--json"]) == 2
    failed = {c["model"]: c for c in json.loads(capsys.readouterr().out)["models"]}["stt"]
    assert not failed["passed"] and len(failed["disagreements"]) == 1


def _selfcheck(bundle: Path, capsys: Any) -> dict[str, Any]:
    """`alertfusion selfcheck --json` on the bundle, which must pass: each model's check."""
    assert alertfusion_main(["selfcheck", "--bundle", str(bundle), "--json"]) == EXIT_OK
    return {c["model"]: c for c in json.loads(capsys.readouterr().out)["models"]}


def test_int8_is_refused_for_an_untrained_whisper_that_cannot_show_agreement(
    tiny_bundle: Path, whisper_checkpoint: tuple[Path, Any], calibration: Path,
    tmp_path: Path, capsys: Any,
) -> None:  # fmt: skip
    out = tmp_path / "bundle"
    code = _transcriber(WHISPER_RECIPE, tiny_bundle, out, calibration, "--whisper",
                        str(whisper_checkpoint[0]), "--quantize", "int8")  # fmt: skip
    assert code == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "error: QUANTIZATION_REFUSED" in err and "--quantize none" in err
    assert not out.exists()
