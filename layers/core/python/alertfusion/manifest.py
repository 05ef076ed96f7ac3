"""The model bundle's manifest: the contract between model_export and the runtime.

One pydantic schema, written by `python -m model_export` and read by the runtime. Every
preprocessing number the trained models depend on lives here (docs/OPERATIONS.md, "Your own
model bundle"), so a differently trained model changes the manifest, not the code.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alertfusion.errors import BundleError, ReasonCode

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"

CLASS_LABELS: tuple[str, ...] = ("regular", "help", "robbery", "sexual", "theft", "violence")
CLASS_LABELS_KO: tuple[str, ...] = (
    "정상",
    "도움요청",
    "강도범죄",
    "강제추행(성범죄)",
    "절도범죄",
    "폭력범죄",
)
BINARY_LABELS: tuple[str, ...] = ("regular", "alert")

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
FileName = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+$", max_length=128)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Labels(_Strict):
    classes: list[str] = Field(default_factory=lambda: list(CLASS_LABELS))
    classes_ko: list[str] = Field(default_factory=lambda: list(CLASS_LABELS_KO))
    binary: list[str] = Field(default_factory=lambda: list(BINARY_LABELS))
    #: index of the "not an emergency" class in `classes` and in `binary`
    regular_index: int = 0

    @model_validator(mode="after")
    def _consistent(self) -> Labels:
        if len(self.classes) != len(self.classes_ko):
            raise ValueError("classes and classes_ko must have the same length")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("class labels must be unique")
        if len(self.binary) != 2:
            raise ValueError("the binary gate has exactly two labels")
        if not 0 <= self.regular_index < len(self.classes):
            raise ValueError("regular_index out of range")
        return self


class AudioPreprocessing(_Strict):
    """docs/REFERENCE_MODEL.md, "Audio preprocessing"."""

    sample_rate: int = Field(44_100, gt=0)
    #: librosa.load's default resampler; the runtime reproduces it with python-soxr
    resample_quality: Literal["soxr_hq"] = "soxr_hq"
    window_seconds: float = Field(5.0, gt=0)
    n_fft: int = Field(1024, gt=0)
    hop_length: int = Field(1024, gt=0)
    window: Literal["hann"] = "hann"
    center: bool = True
    pad_mode: Literal["constant"] = "constant"
    n_mels: int = Field(128, gt=0)
    mel_fmin: float = Field(0.0, ge=0)
    #: None means sample_rate / 2
    mel_fmax: float | None = None
    mel_norm: Literal["slaney"] = "slaney"
    mel_htk: bool = False
    mel_power: float = 2.0
    n_mfcc: int = Field(48, gt=0)
    db_ref: float = 1.0
    db_amin: float = 1e-10
    db_top: float = 80.0
    dct_type: Literal[2] = 2
    dct_norm: Literal["ortho"] = "ortho"
    zscore_eps: float = 1e-8
    #: "zscore": z-score of the Mel power (what training fed the network);
    #: "zscore_db": power_to_db of that z-score (what the original server did).
    mel_transform: Literal["zscore", "zscore_db"] = "zscore"
    #: (height, width) every panel (S, M', C') is resized to
    panel_size: tuple[int, int] = (64, 64)
    #: "stacked": S, M', C' stacked as rows -> (N, 1, 3*H, W) (the trained layout);
    #: "channels": S, M', C' as three channels -> (N, 3, H, W) (the original README's layout)
    layout: Literal["stacked", "channels"] = "stacked"

    @property
    def fmax(self) -> float:
        return self.mel_fmax if self.mel_fmax is not None else self.sample_rate / 2

    @property
    def window_samples(self) -> int:
        return round(self.window_seconds * self.sample_rate)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one window's image."""
        h, w = self.panel_size
        return (1, 3 * h, w) if self.layout == "stacked" else (3, h, w)


class TextPreprocessing(_Strict):
    """docs/REFERENCE_MODEL.md, "Text model": KoBERT tokenisation reproduced by tokenizer.json."""

    tokenizer_file: FileName = "tokenizer.json"
    tokenizer_sha256: Sha256
    max_len: int = Field(60, ge=3)
    vocab_size: int = Field(..., gt=0)
    cls_id: int = Field(..., ge=0)
    sep_id: int = Field(..., ge=0)
    pad_id: int = Field(..., ge=0)
    unk_id: int = Field(..., ge=0)
    mask_id: int = Field(..., ge=0)
    #: serving runs at the true length; the attention mask makes it equal to padded inference
    pad_to_max_len: bool = False
    #: how the training code tokenised: "sentencepiece" (SentencePiece on the whole text, the
    #: documented path) or "bert_sp" (gluonnlp's BERTSPTokenizer: BERT basic tokenisation, then
    #: SentencePiece per token). tokenizer.json encodes either; this records which one.
    tokenizer_pipeline: Literal["sentencepiece", "bert_sp"] = "sentencepiece"
    source_spm_sha256: Sha256 | None = None
    source_vocab_sha256: Sha256 | None = None


class QuantizationReport(_Strict):
    """int8 against fp32 on the calibration inputs, judged by margins (alertfusion.agreement).

    The optional fields are absent from bundles built before the margin rule."""

    method: Literal["dynamic", "static_qdq"]
    n_inputs: int = Field(..., gt=0)
    #: share of inputs whose top-1 class agrees, near ties included (for information)
    top1_agreement: float = Field(..., ge=0, le=1)
    max_probability_shift: float = Field(..., ge=0)
    #: the build refuses int8 when `decisive_agreement` is below this
    threshold: float = Field(..., ge=0, le=1)
    #: the model's int8 tolerance (alertfusion.agreement.Tolerance): the largest spread
    #: (max - min) and the largest L2 norm of one input's (int8 - fp32) logits
    max_logit_spread: float | None = Field(None, ge=0)
    max_logit_error: float | None = Field(None, ge=0)
    #: inputs whose fp32 margin is beyond the largest spread of the other inputs
    n_decisive: int | None = Field(None, ge=0)
    #: agreement among the decisive inputs (near ties are not counted)
    decisive_agreement: float | None = Field(None, ge=0, le=1)
    near_ties: int | None = Field(None, ge=0)


class BundleFile(_Strict):
    """A file of the bundle besides the models' own."""

    file: FileName
    sha256: Sha256
    size_bytes: int = Field(..., gt=0)


class GoldenSet(BundleFile):
    """Inputs for each model with the outputs fp32 gives them (and int8 on the build's CPU):
    the self-check that int8 still agrees on the CPU that serves (alertfusion.selfcheck).

    An .npz file; for a model `m` with inputs `x, y`: arrays ``m/x``, ``m/y`` (one row per
    input; text rows right-padded, run one by one at their attention mask's length), ``m/fp32``
    and, for int8 models, ``m/build`` (the build CPU's int8 outputs)."""

    #: rows per model
    inputs: dict[str, int]


class OnnxModel(_Strict):
    file: FileName
    sha256: Sha256
    input_names: list[str]
    output_names: list[str]
    #: the labels of the output's last axis, in order
    labels: list[str]
    quantization: Literal["none", "int8_dynamic", "int8_static_qdq"] = "none"
    quantization_report: QuantizationReport | None = None
    #: max |logit(onnx fp32) - logit(torch)| over the parity inputs
    parity_max_abs_diff: float | None = Field(None, ge=0)
    source_checkpoint_sha256: Sha256 | None = None
    size_bytes: int = Field(..., gt=0)
    #: the fp32 model an int8 one falls back to when the self-check fails on the serving CPU
    #: (`model_export bundle --fp32-fallback`)
    fp32_fallback: BundleFile | None = None


class Models(_Strict):
    audio_binary: OnnxModel
    audio_multiclass: OnnxModel
    text: OnnxModel


class Fusion(_Strict):
    """docs/REFERENCE_MODEL.md, "Decision (late) fusion"."""

    #: softmax(a / ||a||_2 + t / ||t||_2)
    method: Literal["l2norm_softmax"] = "l2norm_softmax"
    #: "binary": the binary audio model decides first whether anything else runs;
    #: "none": every model always runs
    gate: Literal["binary", "none"] = "binary"
    #: how windows of a long recording combine: the window with the highest
    #: emergency probability (1 - p(regular)) decides
    window_aggregation: Literal["max_emergency"] = "max_emergency"


class Manifest(_Strict):
    schema_version: Literal[1] = 1
    bundle_version: str = Field(..., min_length=1, max_length=128)
    created_at: datetime
    #: False for `model_export demo` bundles (deterministic random weights)
    trained: bool
    description: str = ""
    labels: Labels = Field(default_factory=Labels)
    audio: AudioPreprocessing = Field(default_factory=AudioPreprocessing)
    text: TextPreprocessing
    models: Models
    fusion: Fusion = Field(default_factory=Fusion)
    opset: int = Field(17, ge=7)
    #: tool versions that produced the bundle (torch, onnx, onnxruntime, ...)
    producer: dict[str, str] = Field(default_factory=dict)
    #: the self-check's inputs and reference outputs (absent from bundles built before it)
    golden: GoldenSet | None = None

    @model_validator(mode="after")
    def _labels_match_models(self) -> Manifest:
        if self.models.audio_binary.labels != self.labels.binary:
            raise ValueError("models.audio_binary.labels must equal labels.binary")
        for name in ("audio_multiclass", "text"):
            if getattr(self.models, name).labels != self.labels.classes:
                raise ValueError(f"models.{name}.labels must equal labels.classes")
        return self

    def model_entries(self) -> dict[str, OnnxModel]:
        """The models by name (as manifest v2 keys them)."""
        return dict(self.models)

    def files(self) -> dict[str, str]:
        """Every file of the bundle (besides the manifest) and its sha256."""
        out = {}
        for _, model in self.models:
            out[model.file] = model.sha256
            if model.fp32_fallback is not None:
                out[model.fp32_fallback.file] = model.fp32_fallback.sha256
        out[self.text.tokenizer_file] = self.text.tokenizer_sha256
        if self.golden is not None:
            out[self.golden.file] = self.golden.sha256
        return out

    def dump(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Manifest:
        """Read and validate a manifest file; any problem is a BUNDLE_INVALID error."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise BundleError(
                f"no {MANIFEST_FILE} at {path}", code=ReasonCode.BUNDLE_NOT_FOUND
            ) from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"{path} is not a readable JSON manifest: {exc}") from exc
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise BundleError(
                f"{path} does not match manifest schema v{SCHEMA_VERSION}: {exc}"
            ) from exc
