"""ONNX export (opset 17, legacy TorchScript exporter) and the parity check against PyTorch.

Every export is run with ONNX Runtime (CPU, default graph optimisations: what the runtime
uses) on several inputs and compared with the PyTorch model: batch 1 and batch > 1 for the
audio models; for the text model, texts of different lengths padded into one batch with an
attention mask, compared with PyTorch on each text alone at its true length (so dynamic batch,
dynamic sequence and the mask semantics are all covered). Largest |Δlogit| above the
tolerance is a PARITY_FAILED and the export fails.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from model_export.errors import ExportError, ExportReason

OPSET = 17
AUDIO_INPUT = "image"
TEXT_INPUTS: tuple[str, str, str] = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT = "logits"
#: fp32 ONNX against PyTorch, max |Δlogit|
FP32_TOLERANCE = 1e-4

#: intra-op threads for the sessions made here; 0 = ONNX Runtime's default (one per core)
_ort_threads = 0


@contextlib.contextmanager
def compute_threads(n: int) -> Iterator[None]:
    """Run PyTorch and the ONNX Runtime sessions made here on `n` threads (0: defaults).

    Tiny test models use one: their operators are too small to share, and on a busy
    two-core machine the spinning of a second thread costs more than it brings (the tiny
    DenseNet's fitting under load was several times slower).
    """
    global _ort_threads
    saved_torch, saved_ort = torch.get_num_threads(), _ort_threads
    if n:
        torch.set_num_threads(n)
        _ort_threads = n
    try:
        yield
    finally:
        torch.set_num_threads(saved_torch)
        _ort_threads = saved_ort


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the chatter of the exporter and ONNX Runtime's tools (logging, warnings and
    prints); the CLI reports progress itself."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def _export(
    model: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    input_names: Sequence[str],
    dynamic_axes: dict[str, dict[int, str]],
    opset: int,
) -> None:
    model.eval()
    # quiet(): the legacy exporter's deprecation notice and tracer warnings about
    # shape-derived Python values; parity on other shapes is what proves the graph general.
    with quiet(), torch.no_grad():
        torch.onnx.export(
            model,
            args,
            str(path),
            input_names=list(input_names),
            output_names=[OUTPUT],
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
            external_data=False,
        )


def export_audio_model(
    model: nn.Module, path: Path, input_shape: tuple[int, int, int], *, opset: int = OPSET
) -> None:
    """`image` float32 (N, C, H, W) -> `logits` (N, classes), dynamic N."""
    example = torch.zeros((2, *input_shape), dtype=torch.float32)
    _export(
        model,
        (example,),
        path,
        [AUDIO_INPUT],
        {AUDIO_INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
        opset,
    )


def chain_concat_file(path: Path) -> int:
    """`chain_concats` on the model file at `path`, in place; returns the nodes changed."""
    model = onnx.load(str(path))
    changed = chain_concats(model.graph)
    if changed:
        onnx.save(model, str(path))
    return changed


def chain_concats(graph: onnx.GraphProto) -> int:
    """Rewrite each Concat whose inputs but the last are exactly another Concat's inputs (same
    axis) to join that Concat's output and the last input; drop one-input Concats (copies).
    Returns how many nodes changed.

    A DenseNet layer concatenates every earlier feature map of its block
    (`torch.cat(features, 1)`, as timm writes it): layer k's Concat has k + 1 inputs, and the
    next layer's repeats them. Chained, every Concat has two inputs: the same bytes move, but
    ONNX Runtime's channels-last concatenation copies each input's slice pixel by pixel, so
    the copies (pixels x inputs, summed over the Concats) of a full-size window fall from
    56,412 to 16,512. The values are identical (a copy is a copy) and the quantized window
    runs faster (docs/DECISIONS.md, "Quantization layouts").
    """
    rename: dict[str, str] = {}
    made: dict[tuple[int, tuple[str, ...]], str] = {}
    kept = []
    changed = 0
    outputs = {o.name for o in graph.output}
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name in rename:
                node.input[k] = rename[name]
        if node.op_type != "Concat":
            kept.append(node)
            continue
        axis = next(a.i for a in node.attribute if a.name == "axis")
        inputs = tuple(node.input)
        if len(inputs) == 1 and node.output[0] not in outputs:
            rename[node.output[0]] = inputs[0]
            changed += 1
            continue
        prefix = made.get((axis, inputs[:-1]))
        if prefix is not None:
            del node.input[:]
            node.input.extend([prefix, inputs[-1]])
            changed += 1
        made[(axis, inputs)] = node.output[0]
        kept.append(node)
    if changed:
        del graph.node[:]
        graph.node.extend(kept)
    return changed


def export_text_model(model: nn.Module, path: Path, *, opset: int = OPSET) -> None:
    """`input_ids`, `attention_mask`, `token_type_ids` int64 (N, L) -> `logits` (N, classes),
    dynamic N and L."""
    ids = torch.full((2, 8), 5, dtype=torch.int64)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    _export(
        model,
        (ids, mask, torch.zeros_like(ids)),
        path,
        TEXT_INPUTS,
        {name: {0: "batch", 1: "sequence"} for name in TEXT_INPUTS} | {OUTPUT: {0: "batch"}},
        opset,
    )


def optimize_text_graph(
    src: Path, dst: Path, *, num_heads: int, hidden_size: int
) -> dict[str, int]:
    """ONNX Runtime's BERT graph optimizer (Attention, EmbedLayerNormalization, BiasGelu
    fusions); returns the fused-operator counts.

    SkipLayerNormalization fusion is left out: ONNX Runtime 1.31's CPU kernel for it is slower
    than the Add + LayerNormalization it replaces, and the runtime disables that fusion at
    load too. The rest leaves run time unchanged and makes session creation faster
    (docs/DECISIONS.md, "SkipLayerNormalization").
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    fusions = FusionOptions("bert")
    fusions.enable_skip_layer_norm = False
    with quiet():
        model = optimize_model(
            str(src),
            model_type="bert",
            num_heads=num_heads,
            hidden_size=hidden_size,
            optimization_options=fusions,
        )
        model.save_model_to_file(str(dst))
    stats = model.get_fused_operator_statistics()
    return {name: int(count) for name, count in stats.items() if count}


def ort_session(path: Path, *, threads: int = 0, reference: bool = False) -> ort.InferenceSession:
    """A CPU session with ONNX Runtime's default (full) graph optimisations; `reference`: with
    none, so a QDQ graph runs through float kernels instead of this CPU's int8 kernels."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if reference:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    # no busy-waiting: on a shared machine spinning threads slow everyone down
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    threads = threads or _ort_threads
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_audio(session: ort.InferenceSession, images: np.ndarray, *, batch: int = 16) -> np.ndarray:
    """Logits for `images` (N, C, H, W), run in chunks of `batch`."""
    out = [
        session.run([OUTPUT], {AUDIO_INPUT: images[i : i + batch].astype(np.float32)})[0]
        for i in range(0, len(images), batch)
    ]
    return np.concatenate(out, axis=0)


def pad_batch(
    sequences: Sequence[Sequence[int]], *, pad_id: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(input_ids, attention_mask, token_type_ids) int64, right-padded to the longest."""
    length = max(len(s) for s in sequences)
    ids = np.full((len(sequences), length), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), length), dtype=np.int64)
    for i, seq in enumerate(sequences):
        ids[i, : len(seq)] = seq
        mask[i, : len(seq)] = 1
    return ids, mask, np.zeros_like(ids)


def run_text(
    session: ort.InferenceSession,
    sequences: Sequence[Sequence[int]],
    *,
    pad_id: int,
    batch: int = 16,
) -> np.ndarray:
    """Logits for token-id sequences, padded per chunk of `batch`."""
    out = []
    for i in range(0, len(sequences), batch):
        ids, mask, types = pad_batch(sequences[i : i + batch], pad_id=pad_id)
        feeds = dict(zip(TEXT_INPUTS, (ids, mask, types), strict=True))
        out.append(session.run([OUTPUT], feeds)[0])
    return np.concatenate(out, axis=0)


def torch_audio_logits(model: nn.Module, images: np.ndarray, *, batch: int = 16) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        out = [
            model(torch.from_numpy(images[i : i + batch].astype(np.float32))).numpy()
            for i in range(0, len(images), batch)
        ]
    return np.concatenate(out, axis=0)


def torch_text_logits(model: nn.Module, sequences: Sequence[Sequence[int]]) -> np.ndarray:
    """Each sequence alone at its true length: what padded batches must reproduce."""
    model.eval()
    out = []
    with torch.no_grad():
        for seq in sequences:
            ids = torch.tensor([list(seq)], dtype=torch.int64)
            out.append(model(ids, torch.ones_like(ids), torch.zeros_like(ids)).numpy())
    return np.concatenate(out, axis=0)


def _check(name: str, diffs: list[float], tolerance: float, what: str) -> float:
    worst = float(max(diffs))
    if not np.isfinite(worst) or worst > tolerance:
        raise ExportError(
            ExportReason.PARITY_FAILED,
            f"{name}: ONNX logits differ from PyTorch by up to {worst:.3g} on {what} "
            f"(tolerance {tolerance:g}); the export is refused",
        )
    return worst


def audio_parity(
    model: nn.Module,
    onnx_path: Path,
    images: np.ndarray,
    *,
    name: str,
    tolerance: float = FP32_TOLERANCE,
) -> float:
    """Max |Δlogit| ONNX vs PyTorch over `images`, run at batch 1 (first 3) and in batches of
    up to 16; raises PARITY_FAILED above `tolerance`."""
    if len(images) < 2:
        raise ValueError("audio parity needs at least two images (batch 1 and batch > 1)")
    session = ort_session(onnx_path)
    reference = torch_audio_logits(model, images)
    single = run_audio(session, images[:3], batch=1)
    batched = run_audio(session, images, batch=16)
    diffs = [
        float(np.abs(single - reference[:3]).max()),
        float(np.abs(batched - reference).max()),
    ]
    return _check(name, diffs, tolerance, f"{len(images)} images (batch 1 and batched)")


def text_parity(
    model: nn.Module,
    onnx_path: Path,
    sequences: Sequence[Sequence[int]],
    *,
    pad_id: int,
    name: str,
    tolerance: float = FP32_TOLERANCE,
) -> float:
    """Max |Δlogit| ONNX vs PyTorch: ONNX on padded batches (and on the first three texts
    alone), PyTorch on each text alone; raises PARITY_FAILED above `tolerance`."""
    lengths = {len(s) for s in sequences}
    if len(sequences) < 2 or len(lengths) < 2:
        raise ValueError("text parity needs at least two texts of different lengths")
    session = ort_session(onnx_path)
    reference = torch_text_logits(model, sequences)
    single = run_text(session, sequences[:3], pad_id=pad_id, batch=1)
    batched = run_text(session, sequences, pad_id=pad_id, batch=16)
    diffs = [
        float(np.abs(single - reference[:3]).max()),
        float(np.abs(batched - reference).max()),
    ]
    return _check(
        name,
        diffs,
        tolerance,
        f"{len(sequences)} texts of {min(lengths)}-{max(lengths)} tokens (alone and padded)",
    )
