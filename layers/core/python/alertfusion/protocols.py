"""The inference engine's interface, for code that must not import alertfusion.engine itself."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from alertfusion.manifest_v2 import ManifestV2
    from alertfusion.result import ClassificationResult
    from alertfusion.selfcheck import Readiness


class Classifier(Protocol):
    """`alertfusion.engine.Engine` as the pipeline's stages and the API's routes use it.

    Typing against this instead of `Engine` keeps numpy and onnxruntime out of the importing
    module (the API starts without them) and lets tests pass a double. `classify` raises
    alertfusion.errors.AudioError (``permanent``) for audio that cannot be used, TextError for
    text that cannot be used, anything else for transient trouble.
    """

    @property
    def spec(self) -> ManifestV2:
        """The bundle's manifest as v2: its recipe (labels, models, decision) and version."""
        ...

    @property
    def has_text_model(self) -> bool:
        """Whether a model of the bundle's recipe reads the transcript (else Transcribe is
        never started: the audio verdict is final)."""
        ...

    @property
    def transcribes(self) -> bool:
        """Whether the bundle's recipe takes its transcript from its own speech-to-text model
        (then Transcribe is never started: one fused verdict, final at once)."""
        ...

    @property
    def loaded(self) -> bool: ...

    @property
    def readiness(self) -> Readiness | None:
        """The serving CPU's self-check (None where it did not run)."""
        ...

    def warm_up(self) -> None: ...

    def classify(
        self,
        audio: bytes,
        *,
        filename: str | None = None,
        text: str | None = None,
        gate: Literal["binary", "none"] | None = None,
        always_text: bool = False,
    ) -> ClassificationResult: ...
