"""The verdict every entry point returns: a stable, JSON-serialisable pydantic model.

How a verdict is made (docs/REFERENCE_MODEL.md, "Decision (late) fusion", per 5-second window):

* gate ``binary`` and the binary audio model says ``regular`` → the window is ``regular``,
  decided by the gate; no 6-class probabilities exist for it (none are invented).
* otherwise the 6-class audio logits ``a`` and, when there is text, the text logits ``t``
  give ``softmax(a/||a|| + t/||t||)`` (``decided_by="fusion"``); with no text the window's
  probabilities are the audio model's own ``softmax(a)`` (``decided_by="audio_only"``).

A recording's overall verdict is its window with the highest emergency probability
(``1 - p(regular)``; for a gate-decided window, the gate's ``p(alert)``), where windows
that passed the gate rank above windows the gate stopped. A short scream inside a long
recording is therefore not averaged away.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RESULT_SCHEMA_VERSION = 1

DecidedBy = Literal["gate", "fusion", "audio_only"]
TextSkipReason = Literal["NO_TEXT", "GATE_REGULAR", "NO_TEXT_MODEL"]
#: how windows combine: today's "the most alarming window" (a recipe's `max_alert`), the mean
#: of the windows' probabilities, the share of time per label, or the one whole-clip window
Aggregation = Literal["max_emergency_window", "mean", "share", "whole"]


class _Model(BaseModel):
    # built on first use: the API's light routes import this module but never validate one
    model_config = ConfigDict(extra="forbid", defer_build=True)


class GateOutcome(_Model):
    """The binary audio model's answer for one window."""

    label: str
    probabilities: dict[str, float]
    logits: list[float]


class WindowResult(_Model):
    index: int = Field(..., ge=0)
    start_s: float = Field(..., ge=0)
    end_s: float = Field(..., ge=0)
    gate: GateOutcome | None = Field(
        None,
        description="the binary model's answer; with the gate off it is reported but decides "
        "nothing",
    )
    audio_probabilities: dict[str, float] | None = Field(
        None, description="6-class softmax of the audio model; None when the gate stopped it"
    )
    audio_logits: list[float] | None = None
    label: str
    decided_by: DecidedBy
    probabilities: dict[str, float] | None = Field(
        None, description="the window's fused (or audio-only) probabilities; None if gate-decided"
    )
    emergency_probability: float = Field(..., ge=0, le=1)


class AudioResult(_Model):
    """The audio models' view of the selected window."""

    gate: GateOutcome | None = None
    label: str
    probabilities: dict[str, float] | None = None
    logits: list[float] | None = None


class TextResult(_Model):
    status: Literal["used", "skipped"]
    skipped_reason: TextSkipReason | None = None
    detail: str | None = Field(None, description="why the text model was skipped, in words")
    label: str | None = None
    probabilities: dict[str, float] | None = None
    logits: list[float] | None = None
    n_tokens: int | None = Field(
        None, description="tokens fed to the model, [CLS] and [SEP] included"
    )


TranscriptSource = Literal["client", "aws_transcribe", "model"]


class TranscriptInfo(_Model):
    """Where the transcript the text model read came from."""

    source: TranscriptSource = Field(
        ...,
        description="client: the caller's own text; aws_transcribe: Amazon Transcribe; "
        "model: the bundle's speech-to-text model",
    )
    text: str
    model: str | None = Field(None, description="the bundle's transcribe model (source model)")
    n_tokens: int | None = Field(
        None, description="symbols the speech-to-text model emitted (source model)"
    )
    ms: float | None = Field(None, description="speech-to-text time (source model)")


class Timings(_Model):
    """Wall-clock milliseconds per stage of one classification."""

    decode_ms: float = 0.0
    features_ms: float = 0.0
    audio_models_ms: float = 0.0
    #: tokenizing and the text model (on the engine's worker, beside the audio stages)
    text_model_ms: float = 0.0
    fusion_ms: float = 0.0
    total_ms: float = 0.0


class ModelInfo(_Model):
    bundle_version: str
    trained: bool
    manifest_schema_version: int
    quantization: dict[str, str] = Field(default_factory=dict)
    gate: Literal["binary", "none"]
    mel_transform: str
    layout: str
    #: the bundle's recipe (alertfusion.recipe); None in results made before recipes
    recipe: str | None = None


class ClassificationResult(_Model):
    schema_version: int = RESULT_SCHEMA_VERSION
    label: str
    label_ko: str
    is_emergency: bool
    decided_by: DecidedBy
    emergency_probability: float = Field(..., ge=0, le=1)
    probabilities: dict[str, float] | None = Field(
        None, description="per-class probabilities of the selected window; None if gate-decided"
    )
    explanation: str
    aggregation: Aggregation = "max_emergency_window"
    shares: dict[str, float] | None = Field(
        None, description="aggregation 'share': the share of the recording's time per label"
    )
    selected_window: int = Field(..., ge=0)
    audio: AudioResult
    text: TextResult
    windows: list[WindowResult]
    duration_s: float = Field(..., ge=0)
    model: ModelInfo
    timings: Timings
    transcript: TranscriptInfo | None = Field(
        None, description="the transcript and where it came from; None without one"
    )


def to_legacy(result: ClassificationResult) -> dict[str, Any]:
    """The original server's response keys (docs/REFERENCE_MODEL.md, "Original HTTP interface").

    Old app builds read these; every key the original answered in any branch is present.
    Where the original answered fixed placeholder numbers (the fused probabilities when the
    gate alone decided) this answers ``null``: a placeholder would look like a real score.
    `combined_probabilities` (the gate branch's name in the original) carries the same
    numbers as `combined_feature`. The text keys are the text model's answer whenever it
    ran (the API runs it whenever there is a transcript: `always_text`).
    """
    audio_logits = result.audio.logits
    if audio_logits is None and result.audio.gate is not None:
        audio_logits = result.audio.gate.logits
    combined = (
        [result.probabilities[label] for label in result.probabilities]
        if result.probabilities is not None
        else None
    )
    return {
        "result": "success",
        "audio_label": result.audio.label,
        "audio_feature": audio_logits,
        "text_label": result.text.label,
        "text_feature": result.text.logits,
        "combined_label": result.label,
        "combined_feature": combined,
        "combined_probabilities": combined,
    }
