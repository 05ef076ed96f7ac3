"""int8 quantization and its agreement report against fp32.

* Audio models: static QDQ int8 (`quant_pre_process`, then `quantize_static`), calibrated on
  feature images of the user's audio: uint8 activations and 7-bit signed weights (U8S8 with
  reduce_range, the combination ONNX Runtime's x86 kernels fuse and that cannot saturate on
  CPUs without VNNI), per-channel weight scales, MinMax ranges. Before quantizing, every
  BatchNormalization the pre-processing could not fold into a convolution (DenseNet's
  pre-activation norms: BN -> ReLU -> conv) becomes the 1x1 depthwise convolution it is
  (`batchnorm_as_depthwise_conv`): quantized, it runs as one uint8 QLinearConv with the ReLU
  fused, where a float BatchNormalization needed dequantize, layout transposes and
  quantize around it. Its one weight per channel is exact under per-channel scales, and the
  activations are quantized at the same points as before, so accuracy is unchanged, and a
  window runs faster.
  Two more choices (figures in docs/DECISIONS.md, "Quantization layouts"):
  - Shared block ranges (`block_range_overrides`): every tensor a dense block's Concats join,
    and the pooling that feeds the block, get one range, the union of their calibrated
    ranges. Each Concat then has its inputs' scale and zero point, and ONNX Runtime's
    QLinearConcat copies bytes where it requantized every input element through a lookup
    table, 62 times a window, so a window runs faster. With shared ranges the Concats are also
    chained (`onnx_export.chain_concats`: two inputs each instead of all of a block's earlier
    ones), which makes a window faster again. Whether a model keeps them is measured
    (`quantize_audio_model`): both layouts are quantized, and per-tensor ranges are kept only
    when their logits are measurably closer to fp32 on the calibration images
    (`keeps_shared_ranges`: lower mean error by more than two standard errors of the paired
    difference). The errors come from the build CPU's int8 kernels, so which layout a model
    keeps can differ between build machines.
  - Float logits: the classifier's Gemm output is not quantized (it is the graph's output,
    read as float). Quantized, 256 levels covered the whole logit range: p(alert) values
    around 1e-4 of different windows collapsed to one value, and a 6-class near tie on a
    fixture flipped.
* Text model: dynamic int8 (`quantize_dynamic`, signed int8 weights with per-channel scales;
  activations are quantized at run time), applied to the graph ONNX Runtime's BERT optimizer
  fused. Per-channel scales give less int8 error than per-tensor on the demo KoBERT's pooled
  outputs, at the same speed. Its weights keep all 8 bits: 7-bit weights (reduce_range, the
  guard against 16-bit saturation on x86 CPUs without VNNI) dropped the demo KoBERT's
  agreement below the threshold, so on such CPUs the text model's int8 logits can differ
  slightly from the build's (which the serving CPU's self-check judges).

Each int8 model is compared with its fp32 source on the calibration inputs: top-1 agreement
and the largest change of any class probability. Below the threshold the int8 model is
refused (QUANTIZATION_REFUSED); the user can keep that model in fp32 instead.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from alertfusion.agreement import judge_logits, measure
from alertfusion.manifest import QuantizationReport
from model_export.errors import ExportError, ExportReason
from model_export.onnx_export import (
    AUDIO_INPUT,
    chain_concat_file,
    ort_session,
    quiet,
    run_audio,
)

DEFAULT_THRESHOLD = 0.99
AUDIO_QUANT_CONFIG = (
    "QDQ static int8: quant_pre_process, unfolded BatchNorms as 1x1 depthwise convolutions,"
    " U8S8 (7-bit weights), per-channel weights, MinMax, float logits; one range per dense"
    " block (Concats chained) unless per-tensor ranges are measurably closer to fp32"
)
TEXT_QUANT_CONFIG = "dynamic int8: quantize_dynamic, signed int8 per-channel weights"
_CALIBRATION_BATCH = 16


class _ImageReader(CalibrationDataReader):
    """Calibration batches of an image array."""

    def __init__(self, images: np.ndarray) -> None:
        self._batches = iter(
            [
                {AUDIO_INPUT: np.ascontiguousarray(images[i : i + _CALIBRATION_BATCH])}
                for i in range(0, len(images), _CALIBRATION_BATCH)
            ]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def quantize_audio_static(
    fp32: Path,
    out: Path,
    images: np.ndarray,
    *,
    work: Path,
    shared_block_ranges: bool = True,
    float_logits: bool = True,
) -> bool:
    """Static QDQ int8 of an audio model, calibrated on `images` (N, C, H, W). Returns
    whether any tensors got a shared block range (False: the model has no Concats)."""
    if len(images) == 0:
        raise ExportError(ExportReason.CALIBRATION_INVALID, "no calibration images")
    pre = Path(work) / f"{Path(fp32).stem}.pre.onnx"
    extra: dict[str, object] = {}
    if float_logits:
        extra["OpTypesToExcludeOutputQuantization"] = ["Gemm"]
    with quiet():
        quant_pre_process(str(fp32), str(pre))
        batchnorm_as_depthwise_conv(pre, pre)
        if shared_block_ranges:
            # copies only under shared ranges: chaining the Concats changes no value
            chain_concat_file(pre)
            extra["TensorQuantOverrides"] = block_range_overrides(pre, images, work=Path(work))
        quantize_static(
            str(pre),
            str(out),
            _ImageReader(images),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            # U8S8: the format ONNX Runtime's x86 kernels fuse. With int8 activations (S8S8)
            # only part of DenseNet's convolutions became QLinearConv and int8 was slower
            # than fp32; with uint8 activations all of them fuse (docs/DECISIONS.md).
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            # 7-bit weights: on x86 CPUs without VNNI (AVX2 / AVX-512 before Cascade Lake,
            # which Lambda may run on) U8S8 products can saturate 16-bit sums; the lost bit
            # costs no agreement on these models.
            reduce_range=True,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options=extra,
        )
    pre.unlink(missing_ok=True)
    return bool(extra.get("TensorQuantOverrides"))


#: per-tensor ranges are kept only when they beat shared block ranges by more than this many
#: standard errors of the mean paired (per-image) difference of centred logit errors
PER_TENSOR_MARGIN_SE = 2.0


@dataclass(frozen=True)
class AudioQuantization:
    """What `quantize_audio_model` kept, and the centred logit errors it compared."""

    shared_block_ranges: bool  # the layout kept
    error: float  # the kept model's centred logit error
    other_error: float | None  # the other layout's (None: no blocks, nothing was compared)
    #: the kept model's logits on the images (for the agreement report: not run again)
    logits: np.ndarray = field(repr=False, compare=False)
    #: PER_TENSOR_MARGIN_SE standard errors of the mean paired difference (None: no blocks)
    margin: float | None = None

    def describe(self) -> str:
        if self.other_error is None:
            return f"per-tensor ranges (no blocks), mean logit error {self.error:.3f}"
        shared, plain = (
            (self.error, self.other_error)
            if self.shared_block_ranges
            else (self.other_error, self.error)
        )
        kept = "shared block ranges" if self.shared_block_ranges else "per-tensor ranges"
        return (
            f"{kept} (mean logit error: shared {shared:.3f}, per-tensor {plain:.3f}; "
            f"per-tensor kept only if better by more than {self.margin:.3f})"
        )


def centred_logit_errors(fp32_logits: np.ndarray, int8_logits: np.ndarray) -> np.ndarray:
    """Per row, mean |int8 - fp32| of the logits, each row centred on its mean first: softmax
    ignores a row's shift, so only the changes that move probabilities count. A row with
    non-finite int8 logits has an infinite error."""
    with np.errstate(invalid="ignore"):
        a = fp32_logits - fp32_logits.mean(axis=-1, keepdims=True)
        b = int8_logits - int8_logits.mean(axis=-1, keepdims=True)
        errors = np.abs(b - a).mean(axis=-1)
    return np.where(np.isfinite(int8_logits).all(axis=-1), errors, np.inf)


def centred_logit_error(fp32_logits: np.ndarray, int8_logits: np.ndarray) -> float:
    """The mean of `centred_logit_errors` over the rows."""
    return float(centred_logit_errors(fp32_logits, int8_logits).mean())


def per_tensor_margin(shared_errors: np.ndarray, plain_errors: np.ndarray) -> float:
    """How much lower per-tensor ranges' mean error must be for them to be kept:
    PER_TENSOR_MARGIN_SE standard errors of the mean paired difference (0 for fewer than two
    images, or when either layout has an infinite error)."""
    diff = np.asarray(shared_errors, dtype=np.float64) - np.asarray(plain_errors, np.float64)
    if len(diff) < 2 or not np.isfinite(diff).all():
        return 0.0
    return float(PER_TENSOR_MARGIN_SE * diff.std(ddof=1) / np.sqrt(len(diff)))


def keeps_shared_ranges(shared_errors: np.ndarray, plain_errors: np.ndarray) -> bool:
    """Shared block ranges, unless per-tensor ranges are measurably closer to fp32: their
    mean error lower by more than `per_tensor_margin`.

    Shared ranges are the default because they are faster and, on the demo models, not less
    accurate in general; a per-tensor advantage within the noise is not worth their cost on
    every request (the figures are in docs/DECISIONS.md, "Quantization layouts")."""
    shared = float(np.mean(shared_errors))
    plain = float(np.mean(plain_errors))
    if not np.isfinite(shared):
        return not np.isfinite(plain)
    return bool(shared - plain <= per_tensor_margin(shared_errors, plain_errors))


def quantize_audio_model(
    fp32: Path, out: Path, images: np.ndarray, reference: np.ndarray, *, work: Path
) -> AudioQuantization:
    """`quantize_audio_static` with shared block ranges and without; the one
    `keeps_shared_ranges` chooses from the per-image centred logit errors against
    `reference` (the fp32 logits on `images`) is written to `out`. A model without Concats is
    quantized once."""
    shared, plain = (
        Path(work) / f"{Path(out).stem}.shared.onnx",
        Path(work) / f"{Path(out).stem}.plain.onnx",
    )
    if not quantize_audio_static(fp32, shared, images, work=work, shared_block_ranges=True):
        logits = run_audio(ort_session(shared), images)
        shutil.move(shared, out)
        return AudioQuantization(False, centred_logit_error(reference, logits), None, logits)
    quantize_audio_static(fp32, plain, images, work=work, shared_block_ranges=False)
    shared_logits = run_audio(ort_session(shared), images)
    plain_logits = run_audio(ort_session(plain), images)
    shared_errors = centred_logit_errors(reference, shared_logits)
    plain_errors = centred_logit_errors(reference, plain_logits)
    keep_shared = keeps_shared_ranges(shared_errors, plain_errors)
    margin = per_tensor_margin(shared_errors, plain_errors)
    shutil.move(shared if keep_shared else plain, out)
    (plain if keep_shared else shared).unlink()
    shared_error, plain_error = float(shared_errors.mean()), float(plain_errors.mean())
    if keep_shared:
        return AudioQuantization(True, shared_error, plain_error, shared_logits, margin)
    return AudioQuantization(False, plain_error, shared_error, plain_logits, margin)


#: ops whose quantized output ONNX Runtime gives its input's scale and zero point
_SAME_RANGE_OPS = ("MaxPool", "AveragePool")


def block_range_overrides(
    model: Path, images: np.ndarray, *, work: Path
) -> dict[str, list[dict[str, np.float32]]]:
    """`TensorQuantOverrides` giving every group of tensors that Concats join (a DenseNet's
    dense block: its input and every layer's output) one range, the union of their MinMax
    ranges on `images`; a pooling op's input joins its output's group, since the quantizer
    gives a pooled tensor its input's range anyway."""
    from onnxruntime.quantization.calibrate import create_calibrator

    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent.setdefault(name, name) != name:
            name = parent[name]
        return name

    for node in onnx.load(str(model)).graph.node:
        if node.op_type == "Concat":
            joined = list(node.input)
        elif node.op_type in _SAME_RANGE_OPS:
            joined = [node.input[0]]
        else:
            continue
        top = root(node.output[0])
        for name in joined:
            if root(name) != top:
                parent[root(name)] = top
    if not parent:
        return {}
    augmented = Path(work) / f"{Path(model).stem}.ranges.onnx"
    calibrator = create_calibrator(
        str(model), augmented_model_path=str(augmented), calibrate_method=CalibrationMethod.MinMax
    )
    try:
        calibrator.collect_data(_ImageReader(images))
        ranges = calibrator.compute_data()
    finally:
        augmented.unlink(missing_ok=True)
    groups: dict[str, list[str]] = {}
    for name in parent:
        groups.setdefault(root(name), []).append(name)
    overrides: dict[str, list[dict[str, np.float32]]] = {}
    for members in groups.values():
        if len(members) < 2:
            continue
        members = [m for m in members if m in ranges]
        if len(members) < 2:
            continue
        lo = min(float(np.min(ranges[m].range_value[0])) for m in members)
        hi = max(float(np.max(ranges[m].range_value[1])) for m in members)
        for name in members:
            overrides[name] = [{"rmin": np.float32(lo), "rmax": np.float32(hi)}]
    return overrides


def batchnorm_as_depthwise_conv(src: Path, dst: Path) -> int:
    """Rewrite every inference-mode BatchNormalization of `src` as the equal 1x1 depthwise
    Conv (weight gamma/sqrt(var+eps) per channel, bias beta - mean*weight, computed in
    float64); write `dst`. Returns how many were rewritten. Only 4-D (N, C, H, W) norms with
    constant parameters are rewritten; anything else is left as it was."""
    model = onnx.load(str(src))
    graph = model.graph
    constants = {i.name: i for i in graph.initializer}
    ranks = {
        v.name: len(v.type.tensor_type.shape.dim)
        for v in (*graph.value_info, *graph.input, *graph.output)
        if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape")
    }
    nodes = []
    rewritten = 0
    for node in graph.node:
        params = node.input[1:5]
        if (
            node.op_type != "BatchNormalization"
            or len(node.output) != 1
            or ranks.get(node.input[0]) != 4
            or not all(name in constants for name in params)
        ):
            nodes.append(node)
            continue
        gamma, beta, mean, var = (
            numpy_helper.to_array(constants[name]).astype(np.float64) for name in params
        )
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        weight = gamma / np.sqrt(var + eps)
        bias = beta - mean * weight
        channels = weight.shape[0]
        prefix = node.name or node.output[0]
        graph.initializer.extend(
            [
                numpy_helper.from_array(
                    weight.astype(np.float32).reshape(channels, 1, 1, 1), f"{prefix}.dw_weight"
                ),
                numpy_helper.from_array(bias.astype(np.float32), f"{prefix}.dw_bias"),
            ]
        )
        nodes.append(
            helper.make_node(
                "Conv",
                [node.input[0], f"{prefix}.dw_weight", f"{prefix}.dw_bias"],
                list(node.output),
                name=f"{prefix}.dw",
                group=channels,
                kernel_shape=[1, 1],
            )
        )
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    # the norms' own parameters are unused now
    used = {name for node in graph.node for name in node.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.save(model, str(dst))
    return rewritten


def quantize_text_dynamic(fp32: Path, out: Path) -> None:
    """Dynamic int8 of the text model (also of a graph with fused contrib operators)."""
    with quiet():
        quantize_dynamic(
            str(fp32),
            str(out),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=False,
            # fused contrib operators carry no ONNX type information; their outputs are float
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )


#: the operators whose weights dynamic int8 quantizes in a speech-to-text model (LSTM
#: included: a CTC model is mostly LSTM; convolutions and embeddings stay fp32)
STT_INT8_OPS = ("MatMul", "Gemm", "LSTM")


def quantize_stt_dynamic(fp32: Path, out: Path) -> None:
    """Dynamic int8 of a speech-to-text graph: int8 weights of STT_INT8_OPS, activations
    quantized at run time (no calibration set: a recording's length varies)."""
    with quiet():
        quantize_dynamic(
            str(fp32), str(out), op_types_to_quantize=list(STT_INT8_OPS),
            weight_type=QuantType.QInt8,
        )  # fmt: skip


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


def agreement_report(
    fp32_logits: np.ndarray,
    int8_logits: np.ndarray,
    *,
    method: Literal["dynamic", "static_qdq"],
    threshold: float,
) -> QuantizationReport:
    """int8 against fp32 judged by margins (alertfusion.agreement, leave one out): an input's
    top-1 must agree where fp32's margin is beyond the largest error spread of the other
    inputs."""
    if fp32_logits.shape != int8_logits.shape or fp32_logits.ndim != 2 or not len(fp32_logits):
        raise ValueError(f"logit shapes differ: {fp32_logits.shape} vs {int8_logits.shape}")
    n = len(fp32_logits)
    if not np.isfinite(int8_logits).all():
        return QuantizationReport(
            method=method,
            n_inputs=n,
            top1_agreement=0.0,
            max_probability_shift=1.0,
            threshold=threshold,
            n_decisive=n,
            decisive_agreement=0.0,
            near_ties=0,
        )
    judged = judge_logits(fp32_logits, int8_logits)
    tolerance = measure(fp32_logits, int8_logits)
    return QuantizationReport(
        method=method,
        n_inputs=n,
        top1_agreement=float((fp32_logits.argmax(axis=1) == int8_logits.argmax(axis=1)).mean()),
        max_probability_shift=float(np.abs(softmax(fp32_logits) - softmax(int8_logits)).max()),
        threshold=threshold,
        max_logit_spread=tolerance.spread,
        max_logit_error=tolerance.l2,
        n_decisive=len(judged.decisive),
        decisive_agreement=judged.rate,
        near_ties=len(judged.near_ties),
    )


def enforce_threshold(name: str, report: QuantizationReport, *, fp32_option: str = "") -> None:
    """QUANTIZATION_REFUSED when int8 agrees with fp32 on too few of the decisive inputs, or
    when no input is decisive (int8 error as large as every fp32 margin: agreement cannot be
    shown). `fp32_option` is the command line's way to keep the model in fp32 (default
    `--keep-fp32 NAME`)."""
    agreement = report.decisive_agreement
    if agreement is not None and agreement >= report.threshold:
        return
    if agreement is None:
        found = (
            "no calibration input has an fp32 margin beyond the int8 error (largest spread of "
            f"an input's logit errors {report.max_logit_spread or 0.0:.3g})"
        )
    else:
        found = (
            f"int8 agrees with fp32 on {agreement:.2%} of the {report.n_decisive} decisive "
            f"calibration inputs (of {report.n_inputs}), below the threshold "
            f"{report.threshold:.2%}"
        )
    raise ExportError(
        ExportReason.QUANTIZATION_REFUSED,
        f"{name}: {found}; keep it in fp32 ({fp32_option or f'--keep-fp32 {name}'}) or lower "
        "--threshold",
    )
