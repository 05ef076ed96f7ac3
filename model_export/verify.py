"""`python -m model_export verify DIR`: re-check a bundle against its manifest.

sha256 and size of every file, `onnx.checker`, each model's opset and input/output names,
dtypes and shapes against the manifest, the tokenizer loading through the runtime's own
`TextEncoder` with the manifest's special ids, and one ONNX Runtime run of each model. Every
problem found is listed in one BUNDLE_INVALID error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from alertfusion.bundle_files import check_file_sums
from alertfusion.errors import BundleError
from alertfusion.manifest import MANIFEST_FILE, Manifest, OnnxModel
from model_export.errors import ExportError, ExportReason
from model_export.onnx_export import AUDIO_INPUT, OUTPUT, TEXT_INPUTS, ort_session

#: a sentence every Korean tokenizer must turn into more than [CLS] [SEP]
PROBE_TEXT = "도와주세요 여기 사람이 쓰러졌어요"

_FLOAT = onnx.TensorProto.FLOAT
_INT64 = onnx.TensorProto.INT64


@dataclass
class VerifyReport:
    directory: Path
    manifest: Manifest
    checks: list[str] = field(default_factory=list)
    #: "model (input)" -> milliseconds of a batch-1 run (only with timing): the lowest of
    #: three rounds' medians of 20 runs, so that other load on the machine counts less
    latency_ms: dict[str, float] = field(default_factory=dict)
    #: "model" -> milliseconds to create its ONNX Runtime session (lowest of three)
    session_ms: dict[str, float] = field(default_factory=dict)


def _io_problems(
    name: str, entry: OnnxModel, model: onnx.ModelProto, manifest: Manifest
) -> list[str]:
    problems = []
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    if inputs != entry.input_names:
        problems.append(f"{name}: ONNX inputs {inputs} != manifest {entry.input_names}")
    if outputs != entry.output_names:
        problems.append(f"{name}: ONNX outputs {outputs} != manifest {entry.output_names}")
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    if opsets.get("ai.onnx") != manifest.opset:
        problems.append(f"{name}: opset {opsets.get('ai.onnx')} != manifest {manifest.opset}")
    audio = name.startswith("audio")
    for value in model.graph.input:
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in tensor.shape.dim]
        want_type = _FLOAT if audio else _INT64
        if tensor.elem_type != want_type:
            problems.append(
                f"{name}: input {value.name} has ONNX type "
                f"{onnx.TensorProto.DataType.Name(tensor.elem_type)}, expected "
                f"{onnx.TensorProto.DataType.Name(want_type)}"
            )
        if audio and dims[1:] != list(manifest.audio.input_shape):
            problems.append(
                f"{name}: input {value.name} has shape {dims}, expected "
                f"(N, {', '.join(map(str, manifest.audio.input_shape))})"
            )
        if not audio and len(dims) != 2:
            problems.append(f"{name}: input {value.name} has rank {len(dims)}, expected 2")
    return problems


def verify_bundle(directory: Path, *, timing: bool = False, threads: int = 0) -> VerifyReport:
    """Check the bundle in `directory`; raises ExportError(BUNDLE_INVALID) listing every
    problem. With `timing`, also measures each model's session creation and batch-1 latency
    (ONNX Runtime's default graph optimisations, `threads` intra-op threads, 0 = default)."""
    directory = Path(directory)
    try:
        manifest = Manifest.load(directory / MANIFEST_FILE)
    except BundleError as exc:
        raise ExportError(ExportReason.BUNDLE_INVALID, exc.message) from exc
    report = VerifyReport(directory=directory, manifest=manifest)
    problems: list[str] = []

    try:
        check_file_sums(directory, manifest.files())
        report.checks.append(f"sha256 of {len(manifest.files())} files")
    except BundleError as exc:
        problems.append(exc.message)
    entries = {
        "audio_binary": manifest.models.audio_binary,
        "audio_multiclass": manifest.models.audio_multiclass,
        "text": manifest.models.text,
    }
    for name, entry in entries.items():
        path = directory / entry.file
        if path.is_file() and path.stat().st_size != entry.size_bytes:
            problems.append(
                f"{name}: {entry.file} is {path.stat().st_size} bytes, manifest says "
                f"{entry.size_bytes}"
            )
    present = {n: e for n, e in entries.items() if (directory / e.file).is_file()}

    encoder = None
    try:
        from tokenizers import Tokenizer

        from alertfusion.text import TextEncoder

        tokenizer_path = directory / manifest.text.tokenizer_file
        encoder = TextEncoder.from_file(tokenizer_path, max_len=manifest.text.max_len)
        # from_file accepted it; check the ids the manifest promises
        raw = Tokenizer.from_file(str(tokenizer_path))
        if encoder.vocab_size != manifest.text.vocab_size:
            problems.append(
                f"tokenizer: {encoder.vocab_size} entries, manifest says {manifest.text.vocab_size}"
            )
        if (encoder.cls_id, encoder.sep_id) != (manifest.text.cls_id, manifest.text.sep_id):
            problems.append(
                f"tokenizer: [CLS]/[SEP] ids {encoder.cls_id}/{encoder.sep_id}, manifest says "
                f"{manifest.text.cls_id}/{manifest.text.sep_id}"
            )
        for label, want in (
            ("[PAD]", manifest.text.pad_id),
            ("[UNK]", manifest.text.unk_id),
            ("[MASK]", manifest.text.mask_id),
        ):
            if raw.id_to_token(want) is None:
                problems.append(f"tokenizer: {label} id {want} is outside its vocabulary")
        report.checks.append("tokenizer loads, special ids match")
    except BundleError as exc:
        problems.append(f"tokenizer: {exc.message}")
        encoder = None

    for name, entry in present.items():
        path = directory / entry.file
        try:
            onnx.checker.check_model(str(path), full_check=False)
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # onnx raises ValidationError, DecodeError, ...
            problems.append(f"{name}: {entry.file} fails onnx.checker: {_first_line(exc)}")
            continue
        found = _io_problems(name, entry, model, manifest)
        problems.extend(found)
        if found:
            continue
        try:
            feeds = _probe_feeds(name, manifest, encoder)
            if feeds is None:
                continue
            session = ort_session(path)
            (logits,) = session.run([OUTPUT], feeds)
            shape = (1, len(entry.labels))
            if logits.shape != shape or not np.isfinite(logits).all():
                problems.append(
                    f"{name}: one run gave logits of shape {logits.shape} "
                    f"(finite: {bool(np.isfinite(logits).all())}), expected {shape}"
                )
                continue
            if timing:
                _measure(report, name, path, feeds, encoder, threads)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            problems.append(f"{name}: ONNX Runtime cannot run it: {_first_line(exc)}")
            continue
        report.checks.append(f"{name}: onnx.checker, inputs/outputs, one run")

    if problems:
        raise ExportError(
            ExportReason.BUNDLE_INVALID,
            f"bundle {directory} failed verification:\n  - " + "\n  - ".join(problems),
        )
    return report


def _probe_feeds(name: str, manifest: Manifest, encoder: object) -> dict[str, np.ndarray] | None:
    if name.startswith("audio"):
        rng = np.random.default_rng(0)
        image = rng.standard_normal((1, *manifest.audio.input_shape)).astype(np.float32)
        return {AUDIO_INPUT: image}
    from alertfusion.text import TextEncoder

    if not isinstance(encoder, TextEncoder):
        return None  # the tokenizer problem is already reported
    encoded = encoder.encode(PROBE_TEXT)
    if encoded is None:
        raise ValueError("the tokenizer turned a Korean sentence into no tokens")
    feeds = encoded.feeds()
    return {k: feeds[k] for k in TEXT_INPUTS}


def _measure(
    report: VerifyReport,
    name: str,
    path: Path,
    feeds: dict[str, np.ndarray],
    encoder: object,
    threads: int,
) -> None:
    creates = []
    for _ in range(3):
        start = time.perf_counter()
        session = ort_session(path, threads=threads)
        creates.append((time.perf_counter() - start) * 1000)
    report.session_ms[name] = min(creates)
    cases = {"": feeds}
    if not name.startswith("audio"):
        from alertfusion.text import TextEncoder

        assert isinstance(encoder, TextEncoder)
        long = encoder.encode(PROBE_TEXT * 12)  # truncated to max_len
        assert long is not None
        cases = {
            f" ({feeds['input_ids'].shape[1]} tokens)": feeds,
            f" ({long.n_tokens} tokens)": {k: long.feeds()[k] for k in TEXT_INPUTS},
        }
    for label, case in cases.items():
        report.latency_ms[name + label] = min(_median_ms(session, case) for _ in range(3))


def _median_ms(
    session: ort.InferenceSession, feeds: dict[str, np.ndarray], runs: int = 20
) -> float:
    run = session.run
    run([OUTPUT], feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run([OUTPUT], feeds)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
