"""The recipe: a bundle's own description of its pipeline (manifest v2, docs/RECIPES.md).

Windows, a graph of named feature nodes computed per window (each an op on earlier nodes),
the models (named, each with its inputs mapped to feature nodes, its output kind and its
labels) and the decision (an optional gate, a fusion, an aggregate over windows, the alert
labels). Every model is strict: an unknown op, an unknown option, a reference to a node or
model that does not exist, a cycle, labels that do not fit the decision are refused here,
naming the field; what needs numbers (shapes, frame counts) is checked by
alertfusion.recipe.graph on a probe signal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alertfusion.errors import BundleError

NodeName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
ModelName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------- windows


class Windows(_Strict):
    """How a recording is cut: consecutive (or overlapping) windows of `seconds` every
    `hop_seconds`, or the whole clip as one window."""

    mode: Literal["fixed", "whole"] = "fixed"
    seconds: float | None = Field(None, gt=0)
    #: None: consecutive windows (hop = seconds)
    hop_seconds: float | None = Field(None, gt=0)
    #: the last window when shorter than `seconds`: "score" it as it is, or "pad" it with
    #: zeros to a whole window (a recording shorter than one window is one such window)
    tail: Literal["score", "pad"] = "score"
    #: a last window shorter than this is dropped, unless it is the only one
    min_tail_seconds: float = Field(0.5, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> Windows:
        if self.mode == "fixed" and self.seconds is None:
            raise ValueError("windows.seconds is required when windows.mode is 'fixed'")
        if self.mode == "whole" and (self.seconds is not None or self.hop_seconds is not None):
            raise ValueError("windows.mode 'whole' takes no seconds or hop_seconds")
        if self.seconds is not None and self.hop_seconds is not None:
            if self.hop_seconds > self.seconds:
                raise ValueError("windows.hop_seconds must not exceed windows.seconds (gaps)")
        return self


# ----------------------------------------------------------------------------- feature ops


class _Op(_Strict):
    def sources(self) -> list[str]:
        """The nodes this one reads."""
        source = getattr(self, "input", None)
        return [source] if isinstance(source, str) else []


class Waveform(_Op):
    """The window's samples, float32 at the recipe's sample rate: (n,)."""

    op: Literal["waveform"]


class Resample(_Op):
    """The waveform at another rate: librosa.resample(res_type="soxr_hq") with python-soxr,
    length ceil(n * rate / sample_rate). Nodes after it see `rate` (mel's filters use it);
    yin and tempo are refused after a resample for now."""

    op: Literal["resample"]
    input: NodeName
    rate: int = Field(..., ge=4_000, le=384_000)


class Stft(_Op):
    """|STFT|**power, (1 + n_fft // 2, frames): librosa.stft / torch.stft conventions."""

    op: Literal["stft"]
    input: NodeName
    n_fft: int = Field(..., ge=2)
    hop_length: int = Field(..., gt=0)
    #: samples of the analysis window (centred in n_fft); None: n_fft
    win_length: int | None = Field(None, gt=0)
    window: Literal["hann", "hamming"] = "hann"
    #: periodic (scipy fftbins=True, torch periodic=True) or symmetric
    periodic: bool = True
    center: bool = True
    pad_mode: Literal["constant", "reflect"] = "constant"
    #: the exponent of |STFT|: 1 magnitude, 2 power (librosa's and torchaudio's `power`)
    power: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _window_fits(self) -> Stft:
        if self.win_length is not None and self.win_length > self.n_fft:
            raise ValueError("win_length must not exceed n_fft")
        return self


class Mel(_Op):
    """Mel filters applied to an `stft` node: (n_mels, frames)."""

    op: Literal["mel"]
    input: NodeName
    n_mels: int = Field(..., gt=0)
    fmin: float = Field(0.0, ge=0)
    #: None: sample_rate / 2
    fmax: float | None = Field(None, gt=0)
    scale: Literal["slaney", "htk"] = "slaney"
    #: "slaney": area-normalised filters (librosa's default); None: peak 1 (torchaudio's)
    norm: Literal["slaney"] | None = "slaney"


class Db(_Op):
    """Decibels: kind "power" is librosa.power_to_db (10 log10), kind "amplitude" is
    librosa.amplitude_to_db (20 log10, computed as power_to_db of the square with ref**2 and
    amin**2); `ref` a number or "max" (the window's maximum); `top_db` None: no floor."""

    op: Literal["db"]
    input: NodeName
    kind: Literal["power", "amplitude"] = "power"
    ref: float | Literal["max"] = 1.0
    amin: float = Field(1e-10, gt=0)
    top_db: float | None = Field(80.0, ge=0)


class Mfcc(_Op):
    """DCT-II (orthonormal) of a dB mel spectrogram, first n_mfcc rows: (n_mfcc, frames)."""

    op: Literal["mfcc"]
    input: NodeName
    n_mfcc: int = Field(..., gt=0)
    dct_type: Literal[2] = 2
    norm: Literal["ortho"] = "ortho"


class Delta(_Op):
    """librosa.feature.delta (Savitzky-Golay, mode "interp") along the last axis."""

    op: Literal["delta"]
    input: NodeName
    width: int = Field(9, ge=3)
    order: int = Field(1, ge=1, le=3)
    mode: Literal["interp"] = "interp"

    @model_validator(mode="after")
    def _odd(self) -> Delta:
        if self.width % 2 != 1:
            raise ValueError("delta width must be odd")
        return self


class Log1p(_Op):
    op: Literal["log1p"]
    input: NodeName


class Zscore(_Op):
    """(x - mean) / (std + eps), or / max(std, clamp); over `axes` (None: every axis)."""

    op: Literal["zscore"]
    input: NodeName
    axes: list[int] | None = None
    ddof: Literal[0, 1] = 0
    eps: float | None = Field(None, ge=0)
    clamp: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_guard(self) -> Zscore:
        if (self.eps is None) == (self.clamp is None):
            raise ValueError("zscore takes exactly one of eps (added to std) or clamp (min std)")
        return self


class Affine(_Op):
    """(x - mean) / scale, each a number or a vector along `axis`: a fitted scaler's stored
    values (scikit-learn StandardScaler: mean_, scale_). None in a recipe: fitted at build
    time; a bundle must carry them."""

    op: Literal["affine"]
    input: NodeName
    mean: float | list[float] | None = 0.0
    scale: float | list[float] | None = 1.0
    axis: int = -1

    @model_validator(mode="after")
    def _nonzero(self) -> Affine:
        scale = self.scale
        values = scale if isinstance(scale, list) else [] if scale is None else [scale]
        if any(v == 0 for v in values):
            raise ValueError("affine scale must not be zero")
        return self


class Frames(_Op):
    """Truncate or pad along `axis` to exactly n (pad at the end with `pad_value`, or "min":
    the node's own minimum)."""

    op: Literal["frames"]
    input: NodeName
    n: int = Field(..., gt=0)
    axis: int = -1
    pad_value: float | Literal["min"] = 0.0


class Resize(_Op):
    """skimage.transform.resize defaults (bilinear, mode reflect, Gaussian anti-aliasing,
    clipped to the input's range) to `size` = (rows, columns); a 3-D (H, W, C) node is
    resized per channel."""

    op: Literal["resize"]
    input: NodeName
    size: tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]]


Rgb = tuple[
    Annotated[int, Field(ge=0, le=255)],
    Annotated[int, Field(ge=0, le=255)],
    Annotated[int, Field(ge=0, le=255)],
]


class Colormap(_Op):
    """A 2-D node through a stored 256-entry colour table: x is normalised to [0, 1] by vmin
    and vmax (None: the window's own min / max), entry min(floor(256 x), 255) is taken (as
    matplotlib's Colormap does): (H, W, 3) of table values 0-255."""

    op: Literal["colormap"]
    input: NodeName
    table: list[Rgb] = Field(..., min_length=256, max_length=256)
    vmin: float | None = None
    vmax: float | None = None


class Stack(_Op):
    """np.stack of nodes of one shape along a new `axis`."""

    op: Literal["stack"]
    inputs: list[NodeName] = Field(..., min_length=1)
    axis: int = 0

    def sources(self) -> list[str]:
        return list(self.inputs)


class Concat(_Op):
    """np.concatenate along `axis`; with `flatten`, each input flattened (C order) first."""

    op: Literal["concat"]
    inputs: list[NodeName] = Field(..., min_length=1)
    axis: int = 0
    flatten: bool = False

    def sources(self) -> list[str]:
        return list(self.inputs)


class Yin(_Op):
    """librosa.yin (f0 in Hz per frame)."""

    op: Literal["yin"]
    input: NodeName
    fmin: float = Field(..., gt=0)
    fmax: float = Field(..., gt=0)
    frame_length: int = Field(2048, ge=4)
    #: None: frame_length // 4
    hop_length: int | None = Field(None, gt=0)
    trough_threshold: float = Field(0.1, gt=0)
    center: bool = True
    pad_mode: Literal["constant", "reflect"] = "constant"

    @model_validator(mode="after")
    def _range(self) -> Yin:
        if self.fmin >= self.fmax:
            raise ValueError("yin fmin must be below fmax")
        return self


class Energy(_Op):
    """mean(x**2) of the whole node: (1,)."""

    op: Literal["energy"]
    input: NodeName


class OnsetStrength(_Op):
    """librosa.onset.onset_strength from a dB mel spectrogram node: the mean over bands of
    max(0, S[:, t] - S[:, t - lag]), shifted right by lag + pad_frames (librosa's centring
    compensation n_fft // (2 * hop_length)), cut to the input's frames: (frames,)."""

    op: Literal["onset_strength"]
    input: NodeName
    lag: int = Field(1, gt=0)
    pad_frames: int = Field(2, ge=0)


class Tempo(_Op):
    """librosa.feature.tempo from an onset envelope node (autocorrelation tempogram over
    ac_size seconds, averaged, weighted by a log-normal prior around start_bpm): (1,) BPM."""

    op: Literal["tempo"]
    input: NodeName
    hop_length: int = Field(512, gt=0)
    start_bpm: float = Field(120.0, gt=0)
    std_bpm: float = Field(1.0, gt=0)
    ac_size: float = Field(8.0, gt=0)
    max_tempo: float | None = Field(320.0, gt=0)


Node = Annotated[
    Waveform
    | Resample
    | Stft
    | Mel
    | Db
    | Mfcc
    | Delta
    | Log1p
    | Zscore
    | Affine
    | Frames
    | Resize
    | Colormap
    | Stack
    | Concat
    | Yin
    | Energy
    | OnsetStrength
    | Tempo,
    Field(discriminator="op"),
]

# ---------------------------------------------------------------------------------- models

TEXT_INPUTS: tuple[str, str, str] = ("input_ids", "attention_mask", "token_type_ids")


class Label(_Strict):
    name: str = Field(..., min_length=1, max_length=64)
    #: what people read (e.g. the Korean name); None: the name
    display: str | None = Field(None, max_length=128)

    @property
    def shown(self) -> str:
        return self.display if self.display is not None else self.name


class ModelInput(_Strict):
    """A model input fed from a feature node. The node's per-window array becomes the tensor:
    NCHW takes (H, W) -> (1, H, W) or (C, H, W); NHWC takes (H, W) -> (H, W, 1) or (H, W, C);
    NCW takes (W,) -> (1, W) or (C, W); flat flattens; a batch axis goes first."""

    node: NodeName
    layout: Literal["NCHW", "NHWC", "NCW", "flat"]


class ModelOutput(_Strict):
    #: the ONNX output read
    name: str = Field("logits", min_length=1)
    #: "logits" (softmax gives probabilities), "probabilities", "sigmoid" (one probability
    #: of the second label; the first is 1 - p)
    kind: Literal["logits", "probabilities", "sigmoid"] = "logits"


class Transcription(_Strict):
    """How a `transcribe` model's output becomes text.

    Family "ctc": the output is per-frame logits over the bundle's alphabet, [batch, frames,
    symbols]; greedy decoding takes each frame's top symbol, merges repeats and drops the
    blank; beam decoding is a CTC prefix beam search keeping `beam_width` prefixes (no
    language model). Family "whisper" (greedy only): the model file is the encoder (log-mel
    (1, 80, 3000) -> the decoder layers' cross-attention keys and values), the bundle also
    holds the decoder step with its key/value cache and the tokenizer; greedy generation from
    the prompt (start of transcript, the language token, transcribe, no timestamps) over 30 s
    chunks (alertfusion.stt_whisper)."""

    family: Literal["ctc", "whisper"] = "ctc"
    decoding: Literal["greedy", "beam"] = "greedy"
    #: prefixes kept per frame by beam decoding (family ctc)
    beam_width: int = Field(8, ge=2, le=64)
    #: the alphabet index of the CTC blank (family ctc)
    blank: int = Field(0, ge=0)
    #: a runaway guard: at most this many tokens per second of audio are kept (CTC) or
    #: generated (whisper: per chunk, for its 30 s)
    max_tokens_per_second: float = Field(30.0, gt=0)
    #: the language of the transcripts (whisper: its token <|xx|> starts the prompt)
    language: str = Field("ko", pattern=r"^[a-z]{2,3}$")
    #: whisper: consecutive 30 s chunks of a longer recording overlap by this much
    chunk_overlap_seconds: float = Field(5.0, ge=0, lt=30)

    @model_validator(mode="after")
    def _beam_for_ctc(self) -> Transcription:
        if self.decoding == "beam" and self.family != "ctc":
            raise ValueError("decoding: beam search is for the CTC family (whisper is greedy)")
        return self


class ModelSpec(_Strict):
    #: "classify": one output row of label scores per window; "transcribe": speech-to-text
    #: on the whole recording (its inputs from feature nodes computed on the whole clip)
    task: Literal["classify", "transcribe"] = "classify"
    #: "features": inputs from feature nodes per window; "transcript": the text model (the
    #: bundle's tokenizer makes input_ids, attention_mask, token_type_ids)
    source: Literal["features", "transcript"] = "features"
    inputs: dict[str, ModelInput] = Field(default_factory=dict)
    output: ModelOutput = Field(default_factory=ModelOutput)
    #: a classify model's labels (at least two); a transcribe model has none
    labels: list[Label] = Field(default_factory=list)
    #: a transcribe model's decoding (required there, refused elsewhere)
    transcription: Transcription | None = None

    @property
    def label_names(self) -> list[str]:
        return [label.name for label in self.labels]

    @property
    def output_width(self) -> int:
        """The width of the output's last axis these labels need."""
        return 1 if self.output.kind == "sigmoid" else len(self.labels)

    @property
    def input_names(self) -> list[str]:
        return list(TEXT_INPUTS) if self.source == "transcript" else list(self.inputs)

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.task == "transcribe":
            return self._transcriber()
        if self.transcription is not None:
            raise ValueError("transcription: only a model of task 'transcribe' has one")
        if len(self.labels) < 2:
            raise ValueError("labels: a classify model needs at least two")
        names = self.label_names
        if len(set(names)) != len(names):
            raise ValueError(f"label names must be unique: {names}")
        if self.output.kind == "sigmoid" and len(names) != 2:
            raise ValueError("a sigmoid output has exactly two labels (below 0.5, from 0.5)")
        if self.source == "features" and not self.inputs:
            raise ValueError("a features model needs inputs (ONNX input name -> node)")
        if self.source == "transcript" and self.inputs:
            raise ValueError("a transcript model takes the tokenizer's inputs, not nodes")
        return self

    def _transcriber(self) -> ModelSpec:
        if self.transcription is None:
            raise ValueError("transcription: a transcribe model needs one (family, decoding)")
        if self.labels:
            raise ValueError("labels: a transcribe model has none (its alphabet is a file)")
        if self.source != "features" or len(self.inputs) != 1:
            raise ValueError("inputs: a transcribe model reads exactly one feature node")
        if self.transcription.family == "ctc" and self.output.kind != "logits":
            raise ValueError("output.kind: a CTC model's output is per-frame logits")
        return self


# -------------------------------------------------------------------------------- decision


class Gate(_Strict):
    """A model that runs first on every window; where its top label is `label` ("nothing
    here"), the window stops there."""

    model: ModelName
    label: str


class Fusion(_Strict):
    """How the models' outputs over one label set combine per window: `l2norm_softmax`
    softmax(sum of logits / ||logits||) (logits models; those without input, e.g. no
    transcript, are left out), `mean` of the probabilities, `single` one model."""

    method: Literal["l2norm_softmax", "mean", "single"]
    models: list[ModelName] = Field(..., min_length=1)


class Decision(_Strict):
    gate: Gate | None = None
    fusion: Fusion
    #: over windows: "max_alert" the window with the highest alert probability decides
    #: (windows the gate stopped rank below the others); "mean" of the probabilities;
    #: "share" of time per label (each window counts its duration for its top label);
    #: "whole" the one window of a whole-clip recipe
    aggregate: Literal["max_alert", "mean", "share", "whole"]
    alert_labels: list[str] = Field(default_factory=list)
    #: (gate and a transcript model in the fusion) a window the gate stopped still goes to
    #: fusion when the text model alone reads an alert label; off keeps the gate's word final
    text_overrides_gate: bool = False


# ---------------------------------------------------------------------------------- recipe


#: where a recording's transcript comes from when the client gives none: Amazon Transcribe
#: (the asynchronous pipeline's second stage) or a transcribe model of the bundle
TranscriptSource = Annotated[
    str, Field(pattern=r"^(aws_transcribe|model:[A-Za-z_][A-Za-z0-9_.-]{0,63})$")
]


class Recipe(_Strict):
    name: str = Field(..., pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    description: str = ""
    #: choices made where the source system did not say, and their reasons
    notes: list[str] = Field(default_factory=list)
    sample_rate: int = Field(..., ge=4_000, le=384_000)
    #: librosa.load's default resampler; the runtime reproduces it with python-soxr
    resample_quality: Literal["soxr_hq"] = "soxr_hq"
    windows: Windows
    features: dict[NodeName, Node]
    models: dict[ModelName, ModelSpec] = Field(..., min_length=1)
    decision: Decision
    #: "aws_transcribe" or "model:NAME" (a transcribe model of this recipe); the client's own
    #: text always wins
    transcript_source: TranscriptSource = "aws_transcribe"

    @property
    def transcriber(self) -> str | None:
        """The transcribe model that makes the transcript, or None (Amazon Transcribe)."""
        source = self.transcript_source
        return source.split(":", 1)[1] if source.startswith("model:") else None

    @model_validator(mode="after")
    def _graph(self) -> Recipe:
        from alertfusion.recipe.graph import check_structure

        check_structure(self)
        return self

    @property
    def labels(self) -> list[Label]:
        """The verdict's labels: those of the fused models."""
        return self.models[self.decision.fusion.models[0]].labels

    @classmethod
    def load(cls, path: Path) -> Recipe:
        """A recipe file, checked (structure and shapes on a probe signal); any problem is a
        BUNDLE_INVALID error naming the field."""
        from alertfusion.recipe.graph import check_shapes

        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"{path} is not a readable JSON recipe: {exc}") from exc
        try:
            recipe = cls.model_validate(raw)
        except ValidationError as exc:
            raise BundleError(f"{path} is not a valid recipe: {exc}") from exc
        check_shapes(recipe)
        return recipe
