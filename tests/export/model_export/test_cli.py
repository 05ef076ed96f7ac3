"""`python -m model_export bundle|verify`: round trips from checkpoints in the original formats
to ONNX compared with PyTorch, and every bad input: exit code 2, one message naming what is
wrong, and nothing left where the bundle would have gone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from alertfusion.bundle_files import sha256_file
from alertfusion.manifest import AudioPreprocessing, Manifest
from alertfusion.text import TextEncoder
from model_export.calibration import calibration_images
from model_export.checkpoints import (
    load_densenet_checkpoint,
    load_kobert_checkpoint,
    save_densenet_checkpoint,
)
from model_export.onnx_export import ort_session, run_audio, run_text, torch_audio_logits
from tests.conftest import REPO, SAMPLES
from tests.export.model_export.conftest import CliResult, Sources, leftovers
from tests.export.tokenizer.conftest import legacy_vocab_json

pytestmark = pytest.mark.export

Run = Callable[..., CliResult]
TEXTS = [
    "도와주세요",
    "여기 사람이 쓰러졌어요 빨리 와주세요 119 불러 주세요",
    "오늘 점심은 뭐 먹을까? 날씨가 참 좋네요.",
    "가방 내놔 " * 30,  # longer than max_len: truncated
]


def _text_ids(bundle: Path, manifest: Manifest) -> list[list[int]]:
    encoder = TextEncoder.from_file(
        bundle / manifest.text.tokenizer_file, max_len=manifest.text.max_len
    )
    out = []
    for text in TEXTS:
        encoded = encoder.encode(text)
        assert encoded is not None
        out.append(encoded.input_ids[0].tolist())
    return out


@pytest.fixture(scope="module")
def fp32_bundle(tiny_sources: Sources, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from model_export import cli

    out = tmp_path_factory.mktemp("cli") / "fp32"
    assert cli.main(["bundle", *tiny_sources.args(), "--out", str(out), "--quantize", "none"]) == 0
    return out


def test_fp32_round_trip_from_original_checkpoints_matches_pytorch(
    fp32_bundle: Path, tiny_sources: Sources
) -> None:
    manifest = Manifest.load(fp32_bundle / "manifest.json")
    images = np.concatenate(
        [
            calibration_images(SAMPLES, AudioPreprocessing()).images[:8],
            np.random.default_rng(0).standard_normal((3, 1, 192, 64)).astype(np.float32),
        ]
    )
    for name, path, classes in (
        ("audio_binary", tiny_sources.binary, 2),
        ("audio_multiclass", tiny_sources.multiclass, 6),
    ):
        entry = getattr(manifest.models, name)
        torch_model = load_densenet_checkpoint(path, num_classes=classes, size="tiny")
        got = run_audio(ort_session(fp32_bundle / entry.file), images)
        np.testing.assert_allclose(got, torch_audio_logits(torch_model, images), atol=1e-4)
        assert entry.quantization == "none" and entry.quantization_report is None
        assert entry.parity_max_abs_diff is not None and entry.parity_max_abs_diff <= 1e-4
        assert entry.source_checkpoint_sha256 == sha256_file(path)
        graph = onnx.load(str(fp32_bundle / entry.file)).graph
        assert all(len(n.input) == 2 for n in graph.node if n.op_type == "Concat")  # chained
    text = load_kobert_checkpoint(
        tiny_sources.text, vocab_size=tiny_sources.vocab_size, size="tiny"
    )
    ids = _text_ids(fp32_bundle, manifest)
    assert len(ids[3]) == 60  # truncated to max_len, [CLS] ... [SEP]
    with torch.no_grad():
        want = np.concatenate(
            [
                text(
                    torch.tensor([s]),
                    torch.ones(1, len(s), dtype=torch.int64),
                    torch.zeros(1, len(s), dtype=torch.int64),
                ).numpy()
                for s in ids
            ]
        )
    got = run_text(
        ort_session(fp32_bundle / manifest.models.text.file), ids, pad_id=manifest.text.pad_id
    )
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_the_manifest_records_what_was_built(fp32_bundle: Path, tiny_sources: Sources) -> None:
    manifest = Manifest.load(fp32_bundle / "manifest.json")
    assert manifest.trained is True
    assert manifest.bundle_version.startswith("b-")
    assert manifest.opset == 17
    assert manifest.text.source_spm_sha256 == sha256_file(tiny_sources.spm)
    assert manifest.text.source_vocab_sha256 is None
    assert (manifest.text.cls_id, manifest.text.sep_id, manifest.text.pad_id) == (2, 3, 1)
    assert (manifest.text.unk_id, manifest.text.mask_id, manifest.text.vocab_size) == (0, 4, 300)
    assert manifest.producer["torch"] == torch.__version__
    assert manifest.producer["text_graph"].startswith("onnxruntime.transformers.optimizer")
    files = {p.name for p in fp32_bundle.iterdir()}
    assert files == {"manifest.json", *manifest.files()}
    for name, digest in manifest.files().items():
        assert sha256_file(fp32_bundle / name) == digest
    assert oct((fp32_bundle).stat().st_mode & 0o777) == "0o755"


def test_int8_bundle_with_calibration_audio_and_reports(
    run_cli: Run, tmp_path: Path, tiny_bundle_int8: Path
) -> None:
    # trained-like tiny weights: the demo's checkpoints in the original formats
    ckpt = tiny_bundle_int8.parent / f"{tiny_bundle_int8.name}-checkpoints"
    files = json.loads((ckpt / "checkpoints.json").read_text())["files"]
    out = tmp_path / "int8"
    result = run_cli(
        "bundle",
        "--audio-binary", ckpt / files["audio_binary"],
        "--audio-multiclass", ckpt / files["audio_multiclass"],
        "--text", ckpt / files["text"],
        "--spm", ckpt / files["spm"],
        "--out", out,
        "--calibration-audio", SAMPLES,
        "--threshold", "0.9",
        "--size", "tiny",
        "--fp32-fallback",
    )  # fmt: skip
    assert result.code == 0, result.err
    manifest = Manifest.load(out / "manifest.json")
    # the golden set: each model's inputs and the fp32 answers its own fp32 graph gives them
    # (the fallback kept beside the int8 model), and the build CPU's int8 answers
    assert manifest.golden is not None
    golden = np.load(out / manifest.golden.file)
    for name, entry in manifest.models:
        assert entry.fp32_fallback is not None and (out / entry.fp32_fallback.file).is_file()
        assert sha256_file(out / entry.fp32_fallback.file) == entry.fp32_fallback.sha256
        rows = manifest.golden.inputs[name]
        assert rows >= 3 and golden[f"{name}/fp32"].shape[0] == rows
        session = ort_session(out / entry.fp32_fallback.file)
        for i in range(rows):
            feeds = {x: golden[f"{name}/{x}"][i : i + 1] for x in entry.input_names}
            if "attention_mask" in feeds:
                n = int(feeds["attention_mask"].sum())
                feeds = {x: v[:, :n] for x, v in feeds.items()}
            got = session.run(None, feeds)[0][0]
            assert np.abs(got - golden[f"{name}/fp32"][i]).max() <= 1e-4, (name, i)
        assert golden[f"{name}/build"].shape == golden[f"{name}/fp32"].shape
    for name in ("audio_binary", "audio_multiclass"):
        entry = getattr(manifest.models, name)
        assert entry.quantization == "int8_static_qdq"
        report = entry.quantization_report
        assert report is not None and report.method == "static_qdq" and report.n_inputs == 36
        assert report.threshold == 0.9
        assert report.decisive_agreement is not None and report.decisive_agreement >= 0.9
        assert "QuantizeLinear" in {n.op_type for n in onnx.load(str(out / entry.file)).graph.node}
    text = manifest.models.text
    assert text.quantization == "int8_dynamic" and text.quantization_report is not None
    assert text.quantization_report.n_inputs == 4 + 120  # transcripts + generated sentences
    # the closing summary on stdout, progress on stderr
    assert "decisive (" in result.out and "near ties" in result.out
    assert "built in" in result.out
    assert "static int8 (QDQ), calibrating on 36 images" in result.err


@pytest.fixture
def near_tied(tiny_sources: Sources, tmp_path: Path) -> Path:
    """A binary checkpoint deciding on a fine distinction: its two logits are +-v.(f - mean f)
    of the pooled features f, so many calibration images sit near the tie, where int8 noise
    flips the answer (measured: 89 % agreement)."""
    model = load_densenet_checkpoint(tiny_sources.binary, num_classes=2, size="tiny")
    images = calibration_images(SAMPLES, AudioPreprocessing()).images
    with torch.no_grad():
        pooled = model.forward_pooled(torch.from_numpy(np.array(images)))
        v = torch.randn(pooled.shape[1], generator=torch.Generator().manual_seed(0))
        centre = float(v @ pooled.mean(0))
        head = model.classifier[0]
        assert isinstance(head, torch.nn.Linear)
        head.weight.copy_(torch.stack([v, -v]))
        head.bias.copy_(torch.tensor([-centre, centre]))
    path = tmp_path / "tied.pt"
    save_densenet_checkpoint(model, path)
    return path


@pytest.fixture
def int8_blind(tiny_sources: Sources, tmp_path: Path) -> Path:
    """A binary checkpoint deciding on the direction of its pooled features that varies least
    over the calibration images (the smallest non-zero singular value): int8's rounding of
    those features is larger than anything the direction tells apart, so no margin is beyond
    the int8 error."""
    model = load_densenet_checkpoint(tiny_sources.binary, num_classes=2, size="tiny")
    images = calibration_images(SAMPLES, AudioPreprocessing()).images
    with torch.no_grad():
        pooled = model.forward_pooled(torch.from_numpy(np.array(images))).double()
        centred = pooled - pooled.mean(0)
        _, singular, vt = torch.linalg.svd(centred, full_matrices=False)
        v = vt[int((singular > singular[0] * 1e-6).sum()) - 1]
        # fp32 logits within +-0.05, so fp32 float noise stays within the export parity check
        v = 0.05 * v / float((centred @ v).abs().max())
        centre = float(v @ pooled.mean(0))
        head = model.classifier[0]
        assert isinstance(head, torch.nn.Linear)
        head.weight.copy_(torch.stack([v, -v]).float())
        head.bias.copy_(torch.tensor([-centre, centre]))
    path = tmp_path / "blind.pt"
    save_densenet_checkpoint(model, path)
    return path


def test_near_ties_never_refuse_int8(
    run_cli: Run, tiny_sources: Sources, near_tied: Path, tmp_path: Path
) -> None:
    """The near-tied checkpoint's int8 flips some answers, but only where fp32's own margin
    is within the int8 error: reported, not refused."""
    out = tmp_path / "tied"
    result = run_cli(
        "bundle", *tiny_sources.args(audio_binary=near_tied), "--out", out,
        "--calibration-audio", SAMPLES,
    )  # fmt: skip
    assert result.code == 0, result.err
    report = Manifest.load(out / "manifest.json").models.audio_binary.quantization_report
    assert report is not None and report.near_ties and report.decisive_agreement == 1.0


def test_int8_below_the_threshold_is_refused_and_leaves_nothing(
    run_cli: Run, tiny_sources: Sources, int8_blind: Path, tmp_path: Path
) -> None:
    out = tmp_path / "refused"
    result = run_cli(
        "bundle", *tiny_sources.args(audio_binary=int8_blind), "--out", out,
        "--calibration-audio", SAMPLES,
    )  # fmt: skip
    assert result.code == 2
    assert "QUANTIZATION_REFUSED: audio_binary: " in result.err
    assert "--keep-fp32 audio_binary" in result.err
    assert leftovers(tmp_path, "refused") == []


def test_keep_fp32_per_model(
    run_cli: Run, tiny_sources: Sources, near_tied: Path, tmp_path: Path
) -> None:
    out = tmp_path / "mixed"
    result = run_cli(
        "bundle", *tiny_sources.args(audio_binary=near_tied), "--out", out,
        "--calibration-audio", SAMPLES, "--threshold", "0",
        "--keep-fp32", "audio_binary", "--keep-fp32", "text",
    )  # fmt: skip
    assert result.code == 0, result.err
    models = Manifest.load(out / "manifest.json").models
    assert models.audio_binary.quantization == "none"
    assert models.audio_binary.quantization_report is None
    assert models.audio_multiclass.quantization == "int8_static_qdq"
    assert models.text.quantization == "none"


@pytest.mark.parametrize("value", ["1.01", "-0.1", "ninety"])
def test_absurd_thresholds_are_rejected_by_argparse(
    run_cli: Run, tiny_sources: Sources, tmp_path: Path, value: str
) -> None:
    result = run_cli("bundle", *tiny_sources.args(), "--out", tmp_path / "x", "--threshold", value)
    assert result.code == 2
    assert "--threshold" in result.err
    assert leftovers(tmp_path, "x") == []


def test_int8_without_calibration_audio_is_refused_up_front(
    run_cli: Run, tiny_sources: Sources, tmp_path: Path
) -> None:
    result = run_cli("bundle", *tiny_sources.args(), "--out", tmp_path / "x")
    assert result.code == 2 and "CALIBRATION_INVALID" in result.err
    assert "--calibration-audio" in result.err


def _bad_inputs(src: Sources, tmp: Path) -> dict[str, tuple[list[str], str, list[str]]]:
    truncated = tmp / "truncated.pt"
    truncated.write_bytes(src.text.read_bytes()[:5000])
    text_file = tmp / "notes.pt"
    text_file.write_text("these are not weights\n")
    bad_spm = tmp / "bad.model"
    bad_spm.write_bytes(b"\x00\x01 this is no SentencePiece model " * 10)
    other_spm = tmp / "other"
    other_spm.mkdir()
    from model_export.tokenizer import train_demo_spm

    spm_500 = train_demo_spm(other_spm, vocab_size=500, seed=1)
    return {
        # (overrides, reason, words the message must contain)
        "wrong architecture": (
            ["--size", "full"],
            "CHECKPOINT_MISMATCH",
            ["--audio-binary checkpoint", "does not match DenseNet-121", "missing keys"],
        ),
        "wrong class count": (
            ["--audio-binary", str(src.multiclass)],
            "CHECKPOINT_MISMATCH",
            ["--audio-binary checkpoint", "has 6 classes", "expected 2"],
        ),
        "truncated file": (
            ["--text", str(truncated)],
            "CHECKPOINT_UNREADABLE",
            ["--text checkpoint", "truncated.pt", "truncated or corrupt"],
        ),
        "not a torch checkpoint": (
            ["--audio-multiclass", str(text_file)],
            "CHECKPOINT_UNREADABLE",
            ["notes.pt", "not a PyTorch checkpoint"],
        ),
        "missing checkpoint": (
            ["--audio-multiclass", str(tmp / "nope.pt")],
            "CHECKPOINT_UNREADABLE",
            ["nope.pt", "does not exist"],
        ),
        "spm that does not parse": (
            ["--spm", str(bad_spm)],
            "TOKENIZER_INVALID",
            ["bad.model"],
        ),
        "vocab disagreeing with the embedding": (
            ["--spm", str(spm_500)],
            "VOCAB_MISMATCH",
            ["500 entries", f"{src.vocab_size} rows in bert.embeddings.word_embeddings.weight"],
        ),
    }


BAD = [
    "wrong architecture",
    "wrong class count",
    "truncated file",
    "not a torch checkpoint",
    "missing checkpoint",
    "spm that does not parse",
    "vocab disagreeing with the embedding",
]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_exits_2_with_one_message_and_no_partial_bundle(
    run_cli: Run, tiny_sources: Sources, tmp_path: Path, case: str
) -> None:
    overrides, reason, words = _bad_inputs(tiny_sources, tmp_path)[case]
    result = run_cli(
        "bundle", *tiny_sources.args(), *overrides, "--out", tmp_path / "out", "--quantize", "none"
    )
    assert result.code == 2
    assert result.err.count("error: ") == 1 and f"error: {reason}: " in result.err
    for word in words:
        assert word in result.err
    assert "Traceback" not in result.err
    assert leftovers(tmp_path, "out") == []


def test_existing_output_needs_force_and_force_replaces_only_bundles(
    run_cli: Run, tiny_sources: Sources, fp32_bundle: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bundle"
    shutil.copytree(fp32_bundle, out)
    before = (out / "manifest.json").read_text()
    args = ["bundle", *tiny_sources.args(), "--out", out, "--quantize", "none"]
    result = run_cli(*args)
    assert result.code == 2 and "OUTPUT_EXISTS" in result.err and "--force" in result.err
    assert (out / "manifest.json").read_text() == before
    result = run_cli(*args, "--force", "--bundle-version", "second")
    assert result.code == 0, result.err
    assert Manifest.load(out / "manifest.json").bundle_version == "second"
    assert leftovers(tmp_path, "bundle") == ["bundle"]  # the old one is gone, no temp dirs
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    result = run_cli(
        "bundle", *tiny_sources.args(), "--out", precious, "--quantize", "none", "--force"
    )
    assert result.code == 2 and "not a model bundle" in result.err
    assert (precious / "thesis.txt").read_text() == "years of work"


def test_verify_passes_on_a_fresh_bundle(run_cli: Run, tiny_bundle: Path) -> None:
    result = run_cli("verify", tiny_bundle)
    assert result.code == 0, result.err
    files = len(Manifest.load(tiny_bundle / "manifest.json").files())
    assert files == 5  # three models, the tokenizer, the golden set
    assert "OK" in result.out and f"sha256 of {files} files" in result.out
    for name in ("audio_binary", "audio_multiclass", "text"):
        assert f"{name}: onnx.checker, inputs/outputs, one run" in result.out


def _copy(bundle: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(bundle, out)
    return out


def test_verify_catches_a_tampered_model(run_cli: Run, tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = _copy(tiny_bundle, tmp_path)
    model = onnx.load(str(bundle / "audio_multiclass.onnx"))
    weights = next(i for i in model.graph.initializer if i.name.endswith("weight") or i.dims)
    array = onnx.numpy_helper.to_array(weights).copy()
    array.flat[0] += 1.0  # a still-valid graph with one weight changed
    weights.CopyFrom(onnx.numpy_helper.from_array(array, weights.name))
    onnx.save(model, str(bundle / "audio_multiclass.onnx"))
    result = run_cli("verify", bundle)
    assert result.code == 2 and "BUNDLE_INVALID" in result.err
    assert "sha256 differs from the manifest: audio_multiclass.onnx" in result.err


def test_verify_catches_missing_and_corrupt_files(
    run_cli: Run, tiny_bundle: Path, tmp_path: Path
) -> None:
    bundle = _copy(tiny_bundle, tmp_path)
    (bundle / "tokenizer.json").unlink()
    (bundle / "text.onnx").write_bytes(b"garbage")
    result = run_cli("verify", bundle)
    assert result.code == 2
    assert "missing: tokenizer.json" in result.err
    assert "text: text.onnx fails onnx.checker" in result.err
    assert "tokenizer: tokenizer file tokenizer.json is missing" in result.err


def test_verify_checks_names_not_only_sums(run_cli: Run, tiny_bundle: Path, tmp_path: Path) -> None:
    # an audio graph in the text model's place, its sum and size updated: only the
    # input/output check can tell
    bundle = _copy(tiny_bundle, tmp_path)
    shutil.copy(bundle / "audio_multiclass.onnx", bundle / "text.onnx")
    raw = json.loads((bundle / "manifest.json").read_text())
    raw["models"]["text"]["sha256"] = sha256_file(bundle / "text.onnx")
    raw["models"]["text"]["size_bytes"] = (bundle / "text.onnx").stat().st_size
    (bundle / "manifest.json").write_text(json.dumps(raw))
    result = run_cli("verify", bundle)
    assert result.code == 2
    assert (
        "text: ONNX inputs ['image'] != manifest ['input_ids', 'attention_mask', 'token_type_ids']"
        in result.err
    )


def test_verify_of_a_directory_without_a_bundle(run_cli: Run, tmp_path: Path) -> None:
    result = run_cli("verify", tmp_path)
    assert result.code == 2 and "no manifest.json" in result.err


def test_the_module_entry_point_runs(tiny_bundle: Path, tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "model_export", "verify", str(tiny_bundle)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "model_export", "verify", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: BUNDLE_INVALID: no manifest.json")


def test_a_vocab_json_is_the_authority_for_ids(
    run_cli: Run, tiny_sources: Sources, tmp_path: Path
) -> None:
    vocab = legacy_vocab_json(tiny_sources.spm, tmp_path / "vocab.json")
    out = tmp_path / "with-vocab"
    result = run_cli(
        "bundle", *tiny_sources.args(), "--vocab", vocab, "--out", out, "--quantize", "none"
    )
    assert result.code == 0, result.err
    manifest = Manifest.load(out / "manifest.json")
    assert (manifest.text.cls_id, manifest.text.sep_id, manifest.text.mask_id) == (1, 2, 3)
    assert (manifest.text.pad_id, manifest.text.unk_id) == (4, 0)
    assert manifest.text.source_vocab_sha256 == sha256_file(vocab)
    assert _text_ids(out, manifest)[0][0] == 1  # [CLS] by the JSON's id
    assert run_cli("verify", out).code == 0


def test_the_tokenizer_pipeline_is_recorded(
    run_cli: Run, tiny_sources: Sources, tmp_path: Path
) -> None:
    out = tmp_path / "bert-sp"
    result = run_cli(
        "bundle", *tiny_sources.args(), "--out", out, "--quantize", "none",
        "--tokenizer-pipeline", "bert_sp", "--layout", "stacked", "--mel-transform", "zscore_db",
    )  # fmt: skip
    assert result.code == 0, result.err
    manifest = Manifest.load(out / "manifest.json")
    assert manifest.text.tokenizer_pipeline == "bert_sp"
    assert manifest.audio.mel_transform == "zscore_db"


def test_the_three_channel_layout_needs_three_channel_checkpoints(
    run_cli: Run, tiny_sources: Sources, tmp_path: Path
) -> None:
    from model_export.densenet import DenseNet121, densenet_config

    result = run_cli(
        "bundle", *tiny_sources.args(), "--out", tmp_path / "x", "--quantize", "none",
        "--layout", "channels",
    )  # fmt: skip
    assert result.code == 2
    assert "model.features.conv0.weight: checkpoint [16, 1, 7, 7] vs expected [16, 3, 7, 7]" in (
        result.err
    )
    for name, classes in (("b3.pt", 2), ("m3.pt", 6)):
        model = DenseNet121(densenet_config("tiny", num_classes=classes, in_chans=3))
        save_densenet_checkpoint(model, tmp_path / name)
    out = tmp_path / "channels"
    result = run_cli(
        "bundle",
        *tiny_sources.args(audio_binary=tmp_path / "b3.pt", audio_multiclass=tmp_path / "m3.pt"),
        "--out", out, "--quantize", "none", "--layout", "channels",
    )  # fmt: skip
    assert result.code == 0, result.err
    manifest = Manifest.load(out / "manifest.json")
    assert manifest.audio.input_shape == (3, 64, 64)
    (image,) = onnx.load(str(out / "audio_binary.onnx")).graph.input
    assert [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim] == [
        "batch",
        3,
        64,
        64,
    ]


def test_an_unwritable_output_location_is_a_clear_error(
    run_cli: Run, tiny_sources: Sources, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    result = run_cli(
        "bundle", *tiny_sources.args(), "--out", blocker / "bundle", "--quantize", "none"
    )
    assert result.code == 2 and result.err.startswith("error: ")
    assert "Traceback" not in result.err


def test_verify_timing_reports_sessions_and_latencies(run_cli: Run, tiny_bundle: Path) -> None:
    result = run_cli("verify", tiny_bundle, "--timing", "--threads", "1")
    assert result.code == 0, result.err
    assert result.out.count("session created in") == 3
    assert "text (60 tokens):" in result.out  # a text truncated to max_len
    assert result.out.count("per batch-1 run") == 4
