"""A deterministic stand-in for the inference engine, for pipeline tests.

It builds real `ClassificationResult` objects (the pydantic model every entry point
returns), decides the label from rules the test sets (audio-only label, text keywords),
records every call, and can be told to fail, so tests can count inferences and inject
permanent or transient errors. It is not a model: the real engine's end-to-end tests live
elsewhere.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from alertfusion.manifest import (
    BINARY_LABELS,
    CLASS_LABELS,
    CLASS_LABELS_KO,
    Fusion,
    Manifest,
    Models,
    OnnxModel,
    TextPreprocessing,
)
from alertfusion.result import (
    AudioResult,
    ClassificationResult,
    ModelInfo,
    TextResult,
    Timings,
    WindowResult,
)

if TYPE_CHECKING:
    from alertfusion.manifest_v2 import ManifestV2
    from alertfusion.protocols import Classifier
    from alertfusion.selfcheck import Readiness

BUNDLE_VERSION = "test-double-1"


@dataclass(frozen=True)
class Call:
    audio_sha256: str
    audio_bytes: int
    filename: str | None
    text: str | None


def _probabilities(label: str, confidence: float) -> dict[str, float]:
    rest = (1.0 - confidence) / (len(CLASS_LABELS) - 1)
    return {name: (confidence if name == label else rest) for name in CLASS_LABELS}


def make_result(
    label: str,
    *,
    text: str | None = None,
    confidence: float = 0.9,
    bundle_version: str = BUNDLE_VERSION,
) -> ClassificationResult:
    """A consistent ClassificationResult whose overall label is `label`."""
    probabilities = _probabilities(label, confidence)
    emergency = 1.0 - probabilities["regular"]
    decided_by: Literal["fusion", "audio_only"] = "fusion" if text else "audio_only"
    logits = [4.0 if name == label else 0.0 for name in CLASS_LABELS]
    window = WindowResult(
        index=0,
        start_s=0.0,
        end_s=5.0,
        gate=None,
        audio_probabilities=probabilities,
        audio_logits=logits,
        label=label,
        decided_by=decided_by,
        probabilities=probabilities,
        emergency_probability=emergency,
    )
    text_result = (
        TextResult(
            status="used", label=label, probabilities=probabilities, logits=logits, n_tokens=12
        )
        if text
        else TextResult(status="skipped", skipped_reason="NO_TEXT", detail="no text given")
    )
    return ClassificationResult(
        label=label,
        label_ko=CLASS_LABELS_KO[CLASS_LABELS.index(label)],
        is_emergency=label != "regular",
        decided_by=decided_by,
        emergency_probability=emergency,
        probabilities=probabilities,
        explanation=f"test double: {label}",
        selected_window=0,
        audio=AudioResult(label=label, probabilities=probabilities, logits=logits),
        text=text_result,
        windows=[window],
        duration_s=5.0,
        model=ModelInfo(
            bundle_version=bundle_version,
            trained=False,
            manifest_schema_version=1,
            gate="none",
            mel_transform="zscore",
            layout="stacked",
        ),
        timings=Timings(total_ms=1.0),
    )


def _sha256(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


def _model(name: str, labels: tuple[str, ...], inputs: tuple[str, ...] = ("input",)) -> OnnxModel:
    return OnnxModel(
        file=f"{name}.onnx",
        sha256=_sha256(name),
        input_names=list(inputs),
        output_names=["logits"],
        labels=list(labels),
        size_bytes=1,
    )


def make_manifest(bundle_version: str = BUNDLE_VERSION) -> Manifest:
    """A valid manifest of an untrained bundle that has no files, matching `make_result`'s
    model info (no gate)."""
    return Manifest(
        bundle_version=bundle_version,
        created_at=datetime(2024, 1, 1, tzinfo=UTC),
        trained=False,
        description="test double: no bundle behind it",
        text=TextPreprocessing(
            tokenizer_sha256=_sha256("tokenizer"),
            vocab_size=8,
            cls_id=2,
            sep_id=3,
            pad_id=1,
            unk_id=0,
            mask_id=4,
        ),
        models=Models(
            audio_binary=_model("audio_binary", BINARY_LABELS),
            audio_multiclass=_model("audio_multiclass", CLASS_LABELS),
            text=_model("text", CLASS_LABELS, ("input_ids", "attention_mask", "token_type_ids")),
        ),
        fusion=Fusion(gate="none"),
    )


@dataclass
class FakeClassifier:
    """Audio-only calls answer `audio_label`; calls with text answer the label of the first
    keyword found in the text (`text_labels`), else `text_default`."""

    audio_label: str = "help"
    text_labels: dict[str, str] = field(default_factory=dict)
    text_default: str = "regular"
    calls: list[Call] = field(default_factory=list)
    #: raised (once each, in order) by the next calls, before any answer
    fail_next: list[Exception] = field(default_factory=list)
    #: raised by every call whose `text` is not None (e.g. a TextError)
    fail_on_text: Exception | None = None
    #: the rest of alertfusion.protocols.Classifier: nothing to load
    manifest: Manifest = field(default_factory=make_manifest)
    loaded: bool = True
    readiness: Readiness | None = None
    has_text_model: bool = True
    transcribes: bool = False

    @property
    def spec(self) -> ManifestV2:
        from alertfusion.manifest_v2 import from_v1

        return from_v1(self.manifest)

    def warm_up(self) -> None:
        """Nothing to load."""

    def classify(
        self,
        audio: bytes,
        *,
        filename: str | None = None,
        text: str | None = None,
        gate: Literal["binary", "none"] | None = None,
        always_text: bool = False,
    ) -> ClassificationResult:
        self.calls.append(Call(hashlib.sha256(audio).hexdigest(), len(audio), filename, text))
        if self.fail_next:
            raise self.fail_next.pop(0)
        if text is not None and self.fail_on_text is not None:
            raise self.fail_on_text
        if not audio:
            raise AssertionError("the pipeline must never classify empty bytes")
        if text is None:
            return make_result(self.audio_label)
        label = next(
            (lab for word, lab in self.text_labels.items() if word in text), self.text_default
        )
        return make_result(label, text=text)

    @property
    def text_calls(self) -> list[Call]:
        return [c for c in self.calls if c.text is not None]

    @property
    def audio_only_calls(self) -> list[Call]:
        return [c for c in self.calls if c.text is None]


if TYPE_CHECKING:
    # mypy checks this module (pyproject.toml): the double must stay an engine stand-in
    _engine_like: Classifier = FakeClassifier()
