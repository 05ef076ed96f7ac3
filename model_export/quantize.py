"""int8 quantization and its agreement report against fp32.

* Audio models: static QDQ int8 (`quant_pre_process`, then `quantize_static`), calibrated on
  feature images of the user's audio: uint8 activations and 7-bit signed weights (U8S8 with
  reduce_range, the combination ONNX Runtime's x86 kernels fuse and that cannot saturate on
  CPUs without VNNI), per-channel weight scales, MinMax ranges.
* Text model: dynamic int8 (`quantize_dynamic`, signed int8 weights with per-channel scales;
  activations are quantized at run time), applied to the graph ONNX Runtime's BERT optimizer
  fused. Per-channel scales measured 17 % less int8 error than per-tensor on the demo
  KoBERT's pooled outputs, at the same speed. Its weights keep all 8 bits: 7-bit weights
  (reduce_range, the guard against 16-bit saturation on x86 CPUs without VNNI) dropped the demo
  KoBERT's agreement from 99.19 % to 98.39 %, below the threshold, so on such CPUs the text
  model's int8 logits can differ slightly from what was measured here.

Each int8 model is compared with its fp32 source on the calibration inputs: top-1 agreement
and the largest change of any class probability. Below the threshold the int8 model is
refused (QUANTIZATION_REFUSED); the user can keep that model in fp32 instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from alertfusion.manifest import QuantizationReport
from model_export.errors import ExportError, ExportReason
from model_export.onnx_export import AUDIO_INPUT, quiet

DEFAULT_THRESHOLD = 0.99
AUDIO_QUANT_CONFIG = "QDQ static int8: quant_pre_process, S8S8, per-channel weights, MinMax"
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
    fp32: Path, out: Path, images: np.ndarray, *, work: Path, **overrides: object
) -> None:
    """Static QDQ int8 of an audio model, calibrated on `images` (N, C, H, W)."""
    if len(images) == 0:
        raise ExportError(ExportReason.CALIBRATION_INVALID, "no calibration images")
    pre = Path(work) / f"{Path(fp32).stem}.pre.onnx"
    reader = _ImageReader(images)
    kwargs: dict[str, object] = {
        "quant_format": QuantFormat.QDQ,
        "per_channel": True,
        # U8S8: the format ONNX Runtime's x86 kernels fuse. With int8 activations (S8S8) only
        # 66 of DenseNet's 120 convolutions became QLinearConv and a window took 10.0 ms,
        # slower than fp32 (7.8 ms); with uint8 activations all 120 fuse: 3.9 ms.
        "activation_type": QuantType.QUInt8,
        "weight_type": QuantType.QInt8,
        # 7-bit weights: on x86 CPUs without VNNI (AVX2 / AVX-512 before Cascade Lake, which
        # Lambda may run on) U8S8 products can saturate 16-bit sums; measured no loss here.
        "reduce_range": True,
        "calibrate_method": CalibrationMethod.MinMax,
    }
    kwargs.update(overrides)
    with quiet():
        quant_pre_process(str(fp32), str(pre))
        if kwargs.pop("exclude_input_conv", False):
            graph = onnx.load(str(pre)).graph
            kwargs["nodes_to_exclude"] = [n.name for n in graph.node if AUDIO_INPUT in n.input]
        quantize_static(str(pre), str(out), reader, **kwargs)  # type: ignore[arg-type]
    pre.unlink(missing_ok=True)


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


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


def agreement_report(
    fp32_logits: np.ndarray,
    int8_logits: np.ndarray,
    *,
    method: str,
    threshold: float,
) -> QuantizationReport:
    """Top-1 agreement and the largest probability shift of int8 against fp32."""
    if fp32_logits.shape != int8_logits.shape or fp32_logits.ndim != 2 or not len(fp32_logits):
        raise ValueError(f"logit shapes differ: {fp32_logits.shape} vs {int8_logits.shape}")
    agree = float((fp32_logits.argmax(axis=1) == int8_logits.argmax(axis=1)).mean())
    shift = float(np.abs(softmax(fp32_logits) - softmax(int8_logits)).max())
    if not np.isfinite(int8_logits).all():
        agree, shift = 0.0, 1.0
    return QuantizationReport(
        method=method,  # type: ignore[arg-type]
        n_inputs=len(fp32_logits),
        top1_agreement=agree,
        max_probability_shift=shift,
        threshold=threshold,
    )


def enforce_threshold(name: str, report: QuantizationReport) -> None:
    """QUANTIZATION_REFUSED when int8 agrees with fp32 less often than the threshold."""
    if report.top1_agreement < report.threshold:
        raise ExportError(
            ExportReason.QUANTIZATION_REFUSED,
            f"{name}: int8 agrees with fp32 on {report.top1_agreement:.2%} of "
            f"{report.n_inputs} calibration inputs (largest probability shift "
            f"{report.max_probability_shift:.3f}), below the threshold "
            f"{report.threshold:.2%}; keep it in fp32 (--keep-fp32 {name}) or lower "
            "--threshold",
        )


def describe(reports: Sequence[tuple[str, QuantizationReport | None]]) -> str:
    parts = []
    for name, report in reports:
        if report is None:
            parts.append(f"{name}: fp32")
        else:
            parts.append(
                f"{name}: agreement {report.top1_agreement:.2%} on {report.n_inputs}, "
                f"max prob shift {report.max_probability_shift:.4f}"
            )
    return "; ".join(parts)
