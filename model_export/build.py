"""Assemble a model bundle: checkpoints -> strict load -> ONNX + parity -> int8 + agreement ->
tokenizer.json -> manifest.json -> verify, all in a temporary directory next to `--out` that is
renamed into place only when everything passed. Any failure removes it: no partial bundle.
"""

from __future__ import annotations

import hashlib
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np

from alertfusion.bundle_files import sha256_file
from alertfusion.manifest import (
    BINARY_LABELS,
    CLASS_LABELS,
    MANIFEST_FILE,
    AudioPreprocessing,
    BundleFile,
    GoldenSet,
    Manifest,
    Models,
    OnnxModel,
    QuantizationReport,
    TextPreprocessing,
)
from model_export.calibration import (
    CalibrationImages,
    calibration_images,
    calibration_texts,
    read_text_lines,
)
from model_export.checkpoints import load_densenet_checkpoint, load_kobert_checkpoint
from model_export.densenet import DenseNet121, Size
from model_export.errors import ExportError, ExportReason
from model_export.kobert import KoBertClassifier
from model_export.onnx_export import (
    AUDIO_INPUT,
    FP32_TOLERANCE,
    OPSET,
    OUTPUT,
    TEXT_INPUTS,
    audio_parity,
    chain_concat_file,
    compute_threads,
    export_audio_model,
    export_text_model,
    optimize_text_graph,
    ort_session,
    pad_batch,
    run_audio,
    run_text,
    text_parity,
)
from model_export.outputs import check_output, output_lock, publish
from model_export.progress import Progress, summarize
from model_export.quantize import (
    AUDIO_QUANT_CONFIG,
    DEFAULT_THRESHOLD,
    TEXT_QUANT_CONFIG,
    agreement_report,
    enforce_threshold,
    quantize_audio_model,
    quantize_text_dynamic,
)
from model_export.tokenizer import TokenizerArtifacts, convert_tokenizer

MODEL_NAMES: tuple[str, str, str] = ("audio_binary", "audio_multiclass", "text")
FILE_NAMES = {
    "audio_binary": "audio_binary.onnx",
    "audio_multiclass": "audio_multiclass.onnx",
    "text": "text.onnx",
}
TOKENIZER_FILE = "tokenizer.json"
#: texts whose PyTorch logits (each alone) the text export is compared with
PARITY_TEXTS = 16
#: random images added to the parity inputs (besides up to 16 calibration images)
PARITY_RANDOM_IMAGES = 4
GOLDEN_FILE = "golden.npz"
#: the self-check's inputs per model (alertfusion.selfcheck): calibration inputs spread over
#: the set; few and short, because the serving functions run them at every cold start (a
#: canary for kernels that misbehave on the serving CPU, not a second agreement report)
GOLDEN_IMAGES = 4
GOLDEN_TEXTS = 3


@dataclass(frozen=True)
class Sources:
    """The user's files, in the original training formats."""

    audio_binary: Path
    audio_multiclass: Path
    text: Path
    spm: Path
    vocab: Path | None = None


@dataclass(frozen=True)
class BuildOptions:
    quantize: Literal["none", "int8"] = "int8"
    calibration_audio: Path | None = None
    calibration_texts: Path | None = None
    threshold: float = DEFAULT_THRESHOLD
    keep_fp32: frozenset[str] = frozenset()
    #: "tiny" only for tests: the shrunken networks of densenet_config/kobert_config
    size: Size = "full"
    force: bool = False
    trained: bool = True
    bundle_version: str | None = None
    description: str = ""
    audio: AudioPreprocessing = field(default_factory=lambda: AudioPreprocessing())
    max_len: int = 60
    tokenizer_pipeline: Literal["sentencepiece", "bert_sp"] = "sentencepiece"
    #: fuse the text graph with ONNX Runtime's BERT optimizer (kept only if parity holds)
    optimize_text: bool = True
    #: keep each int8 model's fp32 graph too, for the serving CPU's self-check to fall back on
    fp32_fallback: bool = False
    extra_producer: dict[str, str] = field(default_factory=dict)

    def int8(self, name: str) -> bool:
        return self.quantize == "int8" and name not in self.keep_fp32


@dataclass
class BuildResult:
    manifest: Manifest
    directory: Path
    seconds: float


@dataclass
class _Built:
    """One model's final file in the bundle and its figures."""

    file: Path
    parity: float
    quantization: Literal["none", "int8_dynamic", "int8_static_qdq"] = "none"
    report: QuantizationReport | None = None
    detail: str = ""  # how it was quantized, for the manifest's notes
    #: this model's arrays of the golden set (GoldenSet's naming)
    golden: dict[str, np.ndarray] = field(default_factory=dict)
    #: the fp32 graph kept beside an int8 model (--fp32-fallback)
    fallback: Path | None = None


def _producer(options: BuildOptions, notes: dict[str, str]) -> dict[str, str]:
    import onnx
    import onnxruntime
    import sentencepiece
    import tokenizers
    import torch
    import transformers

    from model_export import __name__ as package

    out = {
        "tool": f"{package} (python -m model_export)",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "tokenizers": tokenizers.__version__,
        "sentencepiece": sentencepiece.__version__,
        "exporter": f"torch.onnx.export legacy TorchScript exporter, opset {OPSET}",
        "parity_tolerance": f"{FP32_TOLERANCE:g}",
    }
    out.update(notes)
    out.update(options.extra_producer)
    return out


def _default_version(sources: Sources, sums: dict[str, str], options: BuildOptions) -> str:
    digest = hashlib.sha256()
    for key in sorted(sums):
        digest.update(f"{key}={sums[key]};".encode())
    digest.update(f"quantize={options.quantize};keep={sorted(options.keep_fp32)}".encode())
    return f"b-{digest.hexdigest()[:12]}"


def _parity_images(cal: CalibrationImages | None, cfg: AudioPreprocessing) -> np.ndarray:
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((PARITY_RANDOM_IMAGES, *cfg.input_shape)).astype(np.float32)
    if cal is None:
        return noise
    pick = np.linspace(0, len(cal.images) - 1, min(16, len(cal.images))).round().astype(int)
    return np.concatenate([cal.images[pick], noise])


def _encode(tokenizer: TokenizerArtifacts, texts: list[str]) -> list[list[int]]:
    """Token ids of `texts` through the runtime's own TextEncoder (empty encodings dropped)."""
    from tokenizers import Tokenizer

    from alertfusion.text import TextEncoder

    encoder = TextEncoder(Tokenizer.from_str(tokenizer.tokenizer_json), max_len=tokenizer.max_len)
    out = []
    for encoded in encoder.encode_batch(list(texts)):
        if encoded is not None:
            out.append([int(i) for i in encoded.input_ids[0]])
    return out


def _parity_sequences(sequences: list[list[int]]) -> list[list[int]]:
    """Up to PARITY_TEXTS sequences spread over the lengths, shortest and longest included."""
    by_length = sorted(sequences, key=len)
    pick = np.linspace(0, len(by_length) - 1, min(PARITY_TEXTS, len(by_length))).round()
    chosen = [by_length[int(i)] for i in dict.fromkeys(pick.astype(int).tolist())]
    # interleave lengths so batch 1 (the first three) sees short and long texts
    return chosen[::2] + chosen[1::2]


def _build_audio(
    name: str,
    model: DenseNet121,
    options: BuildOptions,
    cal: CalibrationImages | None,
    partial: Path,
    work: Path,
    progress: Progress,
) -> _Built:
    fp32 = work / f"{name}.fp32.onnx"
    progress(f"{name}: exporting to ONNX (opset {OPSET})")
    export_audio_model(model, fp32, options.audio.input_shape)
    if not options.int8(name):
        chain_concat_file(fp32)  # same values, fewer copies (int8 chains where it can)
    parity = audio_parity(model, fp32, _parity_images(cal, options.audio), name=name)
    progress(f"{name}: parity with PyTorch, max |dlogit| {parity:.2e}")
    final = partial / FILE_NAMES[name]
    images = _golden_images(cal, options.audio)
    golden = {f"{name}/{AUDIO_INPUT}": images, f"{name}/fp32": run_audio(ort_session(fp32), images)}
    if not options.int8(name):
        shutil.move(fp32, final)
        return _Built(final, parity, golden=golden)
    assert cal is not None  # checked before any work
    progress(f"{name}: static int8 (QDQ), calibrating on {len(cal.images)} images")
    reference = run_audio(ort_session(fp32), cal.images)
    kept = quantize_audio_model(fp32, final, cal.images, reference, work=work)
    progress(f"{name}: {kept.describe()}")
    report = agreement_report(
        reference, kept.logits, method="static_qdq", threshold=options.threshold
    )
    progress(f"{name}: {summarize(report)}")
    enforce_threshold(name, report)
    golden[f"{name}/build"] = run_audio(ort_session(final), images)
    return _Built(
        final,
        parity,
        "int8_static_qdq",
        report,
        kept.describe(),
        golden=golden,
        fallback=_keep_fallback(fp32, partial, name, options, chain=True),
    )


def _build_text(
    model: KoBertClassifier,
    tokenizer: TokenizerArtifacts,
    texts: list[str],
    options: BuildOptions,
    partial: Path,
    work: Path,
    progress: Progress,
    notes: dict[str, str],
) -> _Built:
    name = "text"
    sequences = _encode(tokenizer, texts)
    parity_set = _parity_sequences(sequences)
    fp32 = work / "text.fp32.onnx"
    progress(f"text: exporting to ONNX (opset {OPSET}, dynamic batch and sequence)")
    export_text_model(model, fp32)
    parity = text_parity(model, fp32, parity_set, pad_id=tokenizer.pad_id, name=name)
    progress(f"text: parity with PyTorch on {len(parity_set)} texts, max |dlogit| {parity:.2e}")
    graph = fp32
    notes["text_graph"] = "as exported"
    if options.optimize_text:
        fused = work / "text.fused.onnx"
        config = model.config
        stats = optimize_text_graph(
            fp32, fused, num_heads=config.num_attention_heads, hidden_size=config.hidden_size
        )
        try:
            fused_parity = text_parity(
                model, fused, parity_set, pad_id=tokenizer.pad_id, name="text (fused graph)"
            )
        except ExportError as exc:
            progress(f"text: fused graph rejected ({exc.message}); keeping the exported graph")
            notes["text_graph"] = f"as exported (the fused graph failed parity: {exc.message})"
        else:
            graph, parity = fused, fused_parity
            fusions = ", ".join(f"{k} x{v}" for k, v in sorted(stats.items()))
            notes["text_graph"] = (
                f"onnxruntime.transformers.optimizer model_type=bert (fused: {fusions})"
            )
            progress(f"text: fused graph ({fusions}), parity max |dlogit| {parity:.2e}")
    final = partial / FILE_NAMES[name]
    chosen = _golden_sequences(sequences)
    ids, mask, types = pad_batch(chosen, pad_id=tokenizer.pad_id)
    golden = dict(zip((f"{name}/{i}" for i in TEXT_INPUTS), (ids, mask, types), strict=True))
    golden[f"{name}/fp32"] = _one_by_one(graph, chosen, tokenizer.pad_id)
    if not options.int8(name):
        shutil.move(graph, final)
        return _Built(final, parity, golden=golden)
    progress("text: dynamic int8")
    quantize_text_dynamic(graph, final)
    # one text at a time, as the engine runs them: the tolerance measured here is the one the
    # serving CPU's self-check holds the text model to
    reference = _one_by_one(graph, sequences, tokenizer.pad_id)
    quantized = _one_by_one(final, sequences, tokenizer.pad_id)
    report = agreement_report(reference, quantized, method="dynamic", threshold=options.threshold)
    progress(f"text: {summarize(report)}")
    enforce_threshold(name, report)
    golden[f"{name}/build"] = _one_by_one(final, chosen, tokenizer.pad_id)
    return _Built(
        final,
        parity,
        "int8_dynamic",
        report,
        golden=golden,
        fallback=_keep_fallback(graph, partial, name, options),
    )


def _golden_images(cal: CalibrationImages | None, cfg: AudioPreprocessing) -> np.ndarray:
    """GOLDEN_IMAGES calibration images spread over the set (random images without one)."""
    if cal is None:
        rng = np.random.default_rng(1)
        return rng.standard_normal((GOLDEN_IMAGES, *cfg.input_shape)).astype(np.float32)
    pick = np.linspace(0, len(cal.images) - 1, min(GOLDEN_IMAGES, len(cal.images)))
    return np.ascontiguousarray(cal.images[pick.round().astype(int)], dtype=np.float32)


def _golden_sequences(sequences: list[list[int]]) -> list[list[int]]:
    """GOLDEN_TEXTS calibration texts spread over the shorter half of the lengths (a text's
    cost grows with its length; a kernel that misbehaves does so at any length)."""
    by_length = sorted(sequences, key=len)
    shorter = by_length[: max(1, (len(by_length) + 1) // 2)]
    pick = np.linspace(0, len(shorter) - 1, min(GOLDEN_TEXTS, len(shorter))).round()
    return [shorter[int(i)] for i in dict.fromkeys(pick.astype(int).tolist())]


def _one_by_one(model: Path, sequences: list[list[int]], pad_id: int) -> np.ndarray:
    """Each sequence alone at its own length, as the engine runs text: dynamic int8 scales
    each input over the whole batch, so a batch would give other numbers."""
    session = ort_session(model)
    return np.concatenate([run_text(session, [seq], pad_id=pad_id) for seq in sequences])


def _keep_fallback(
    fp32: Path, partial: Path, name: str, options: BuildOptions, *, chain: bool = False
) -> Path | None:
    """With --fp32-fallback, the fp32 graph of an int8 model into the bundle."""
    if not options.fp32_fallback:
        return None
    if chain:
        chain_concat_file(fp32)  # same values, fewer copies
    kept = partial / f"{name}.fp32.onnx"
    shutil.copyfile(fp32, kept)
    return kept


def _entry(
    built: _Built,
    *,
    inputs: list[str],
    labels: list[str],
    source_sha: str,
) -> OnnxModel:
    return OnnxModel(
        file=built.file.name,
        sha256=sha256_file(built.file),
        input_names=inputs,
        output_names=[OUTPUT],
        labels=labels,
        quantization=built.quantization,
        quantization_report=built.report,
        parity_max_abs_diff=built.parity,
        source_checkpoint_sha256=source_sha,
        size_bytes=built.file.stat().st_size,
        fp32_fallback=_bundle_file(built.fallback) if built.fallback is not None else None,
    )


def _bundle_file(path: Path) -> BundleFile:
    return BundleFile(file=path.name, sha256=sha256_file(path), size_bytes=path.stat().st_size)


def _write_golden(built: dict[str, _Built], partial: Path) -> GoldenSet:
    path = partial / GOLDEN_FILE
    arrays = {key: value for b in built.values() for key, value in b.golden.items()}
    with path.open("wb") as f:
        np.savez_compressed(
            f,
            **arrays,  # type: ignore[arg-type]  # numpy's stub: **arrays could fill allow_pickle
        )
    counts = {name: len(b.golden[f"{name}/fp32"]) for name, b in built.items()}
    return GoldenSet(**_bundle_file(path).model_dump(), inputs=counts)


def validate_options(options: BuildOptions) -> None:
    unknown = set(options.keep_fp32) - set(MODEL_NAMES)
    if unknown:
        raise ValueError(f"unknown model names in keep_fp32: {sorted(unknown)}")
    if not 0.0 <= options.threshold <= 1.0:
        raise ValueError("threshold must be within [0, 1]")
    needs_audio = any(options.int8(n) for n in ("audio_binary", "audio_multiclass"))
    if needs_audio and options.calibration_audio is None:
        raise ExportError(
            ExportReason.CALIBRATION_INVALID,
            "static int8 of the audio models needs --calibration-audio DIR (recordings like "
            "the ones the models will see); or --quantize none, or --keep-fp32 audio_binary "
            "--keep-fp32 audio_multiclass",
        )


def build_bundle(
    sources: Sources,
    out: Path,
    options: BuildOptions | None = None,
    progress: Progress | None = None,
) -> BuildResult:
    """Convert `sources` into a verified bundle at `out` (see the module docstring)."""
    options = options or BuildOptions()
    progress = progress or Progress()
    out = Path(out).absolute()
    with output_lock([out.parent], progress), compute_threads(1 if options.size == "tiny" else 0):
        return _build_bundle(sources, out, options, progress)


def _build_bundle(
    sources: Sources, out: Path, options: BuildOptions, progress: Progress
) -> BuildResult:
    from model_export.verify import verify_bundle

    started = time.perf_counter()
    out = Path(out).absolute()
    validate_options(options)
    check_output(out, force=options.force)

    # Everything the user supplied is read and checked before any slow step.
    progress(
        f"tokenizer: converting {sources.spm}" + (f" + {sources.vocab}" if sources.vocab else "")
    )
    tokenizer = convert_tokenizer(
        sources.spm, sources.vocab, max_len=options.max_len, pipeline=options.tokenizer_pipeline
    )
    in_chans = options.audio.input_shape[0]
    progress("checkpoints: loading strictly (weights_only)")
    binary = load_densenet_checkpoint(
        sources.audio_binary,
        num_classes=len(BINARY_LABELS),
        size=options.size,
        in_chans=in_chans,
        what="--audio-binary checkpoint",
    )
    multiclass = load_densenet_checkpoint(
        sources.audio_multiclass,
        num_classes=len(CLASS_LABELS),
        size=options.size,
        in_chans=in_chans,
        what="--audio-multiclass checkpoint",
    )
    text_model = load_kobert_checkpoint(
        sources.text,
        vocab_size=tokenizer.vocab_size,
        size=options.size,
        num_classes=len(CLASS_LABELS),
        what="--text checkpoint",
    )
    sums = {
        "audio_binary": sha256_file(sources.audio_binary),
        "audio_multiclass": sha256_file(sources.audio_multiclass),
        "text": sha256_file(sources.text),
        "spm": sha256_file(sources.spm),
    }
    if sources.vocab is not None:
        sums["vocab"] = sha256_file(sources.vocab)
    cal = None
    if options.calibration_audio is not None:
        progress(f"calibration: feature images of {options.calibration_audio}")
        cal = calibration_images(options.calibration_audio, options.audio)
        progress(f"calibration: {len(cal.images)} images from {len(cal.files)} recordings")
    extra = read_text_lines(options.calibration_texts) if options.calibration_texts else []
    texts = calibration_texts(options.calibration_audio, extra=extra)

    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.work-", dir=out.parent))
    published = False
    try:
        notes: dict[str, str] = {}
        built = {
            "audio_binary": _build_audio(
                "audio_binary", binary, options, cal, partial, work, progress
            ),
            "audio_multiclass": _build_audio(
                "audio_multiclass", multiclass, options, cal, partial, work, progress
            ),
        }
        built["text"] = _build_text(
            text_model, tokenizer, texts, options, partial, work, progress, notes
        )
        audio_int8 = [n for n in ("audio_binary", "audio_multiclass") if options.int8(n)]
        if audio_int8:
            notes["audio_int8"] = "; ".join(
                [AUDIO_QUANT_CONFIG, *(f"{n}: {built[n].detail}" for n in audio_int8)]
            )
        if options.int8("text"):
            notes["text_int8"] = TEXT_QUANT_CONFIG
        notes["audio_graph"] = (
            "as exported: ONNX Runtime applies its graph optimisations when the session loads "
            "(pre-optimised files would be tied to the build machine's CPU)"
        )
        tokenizer_path = partial / TOKENIZER_FILE
        tokenizer_path.write_text(tokenizer.tokenizer_json, encoding="utf-8")
        manifest = Manifest(
            bundle_version=options.bundle_version or _default_version(sources, sums, options),
            created_at=datetime.now(UTC),
            trained=options.trained,
            description=options.description,
            audio=options.audio,
            text=TextPreprocessing(
                tokenizer_file=TOKENIZER_FILE,
                tokenizer_sha256=sha256_file(tokenizer_path),
                max_len=tokenizer.max_len,
                vocab_size=tokenizer.vocab_size,
                cls_id=tokenizer.cls_id,
                sep_id=tokenizer.sep_id,
                pad_id=tokenizer.pad_id,
                unk_id=tokenizer.unk_id,
                mask_id=tokenizer.mask_id,
                tokenizer_pipeline=options.tokenizer_pipeline,
                source_spm_sha256=sums["spm"],
                source_vocab_sha256=sums.get("vocab"),
            ),
            models=Models(
                audio_binary=_entry(
                    built["audio_binary"],
                    inputs=[AUDIO_INPUT],
                    labels=list(BINARY_LABELS),
                    source_sha=sums["audio_binary"],
                ),
                audio_multiclass=_entry(
                    built["audio_multiclass"],
                    inputs=[AUDIO_INPUT],
                    labels=list(CLASS_LABELS),
                    source_sha=sums["audio_multiclass"],
                ),
                text=_entry(
                    built["text"],
                    inputs=list(TEXT_INPUTS),
                    labels=list(CLASS_LABELS),
                    source_sha=sums["text"],
                ),
            ),
            opset=OPSET,
            producer=_producer(options, notes),
            golden=_write_golden(built, partial),
        )
        manifest.dump(partial / MANIFEST_FILE)
        progress("verify: sums, onnx.checker, names, tokenizer, one run of each model")
        verify_bundle(partial)
        check_output(out, force=options.force)  # nothing appeared there meanwhile
        partial.chmod(0o755)  # mkdtemp makes it private; the runtime may run as another user
        publish(partial, out)
        published = True
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not published:
            shutil.rmtree(partial, ignore_errors=True)
    seconds = time.perf_counter() - started
    progress(f"done: {out}")
    return BuildResult(manifest=manifest, directory=out, seconds=seconds)
