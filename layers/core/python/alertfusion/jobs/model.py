"""The job model: states and their allowed moves, stored verdicts, the job record."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, model_validator

from alertfusion.dynamodb import utc_iso
from alertfusion.errors import ReasonCode
from alertfusion.result import ClassificationResult, DecidedBy


class JobStatus(StrEnum):
    """``UPLOAD_PENDING → RECEIVED → TRANSCRIBING → DONE | FAILED``; DONE and FAILED are
    final. A job may skip states, never go back (`can_transition`).

    Deletion is outside the pipeline's moves: its owner may delete a job in any state, which
    leaves a tombstone, DELETING until its recording, transcript, result file and Transcribe
    job are all gone, then DELETED (alertfusion.pipeline.deletion). No pipeline write
    applies to a tombstone."""

    UPLOAD_PENDING = "UPLOAD_PENDING"
    RECEIVED = "RECEIVED"
    TRANSCRIBING = "TRANSCRIBING"
    DONE = "DONE"
    FAILED = "FAILED"
    DELETING = "DELETING"
    DELETED = "DELETED"


#: a tombstone: the owner deleted the job (DELETING while something remains to purge)
DELETION_STATUSES: frozenset[JobStatus] = frozenset({JobStatus.DELETING, JobStatus.DELETED})
#: no verdict will come: the pipeline leaves these jobs alone, clients stop polling
FINAL_STATUSES: frozenset[JobStatus] = frozenset(
    {JobStatus.DONE, JobStatus.FAILED, *DELETION_STATUSES}
)
#: every allowed move (None: no record yet). Forward only; a job may skip states (a
#: hand-dropped upload starts at RECEIVED, a job whose Transcribe event overtakes the
#: starter goes RECEIVED → DONE), but nothing is DONE or TRANSCRIBING without an upload.
_ALLOWED: dict[JobStatus | None, frozenset[JobStatus]] = {
    None: frozenset({JobStatus.UPLOAD_PENDING, JobStatus.RECEIVED, JobStatus.FAILED}),
    JobStatus.UPLOAD_PENDING: frozenset({JobStatus.RECEIVED, JobStatus.FAILED}),
    JobStatus.RECEIVED: frozenset({JobStatus.TRANSCRIBING, JobStatus.DONE, JobStatus.FAILED}),
    JobStatus.TRANSCRIBING: frozenset({JobStatus.DONE, JobStatus.FAILED}),
    JobStatus.DONE: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.DELETING: frozenset(),
    JobStatus.DELETED: frozenset(),
}


def can_transition(current: JobStatus | None, target: JobStatus) -> bool:
    """Whether a job in `current` (None: no record yet) may move to `target`."""
    return target in _ALLOWED[current]


def sources_of(target: JobStatus) -> list[JobStatus]:
    """Every existing state from which `target` is reachable (for write conditions)."""
    return [s for s in JobStatus if can_transition(s, target)]


class Stage(StrEnum):
    PRELIMINARY = "preliminary"
    FINAL = "final"


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


UtcDateTime = Annotated[
    datetime, AfterValidator(_as_utc), PlainSerializer(utc_iso, return_type=str, when_used="json")
]


class Verdict(BaseModel):
    """A verdict as stored on the job: the summary readers need. The full result of the
    final verdict is also written to ``results/{job_id}.json``."""

    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)

    label: str
    label_ko: str
    is_emergency: bool
    decided_by: DecidedBy
    emergency_probability: float
    probabilities: dict[str, float] | None = None
    #: where the text came from (Amazon Transcribe, the client, the bundle's speech-to-text
    #: model), None for an audio-only verdict
    text_source: Literal["transcribe", "client", "model"] | None = None
    #: why a final verdict is audio-only (TRANSCRIBE_FAILED, TRANSCRIPT_EMPTY, ...)
    audio_only_reason: ReasonCode | None = None
    audio_only_detail: str | None = None
    bundle_version: str
    trained: bool
    #: the bundle's recipe (its labels are the verdict's; `label_ko` holds the label's display
    #: name); None in verdicts recorded before recipes, which are emergency-voice's
    recipe: str | None = None
    duration_s: float
    windows: int
    selected_window: int
    inference_ms: float
    decided_at: UtcDateTime
    #: the ETag of the bytes classified (the job's object: every read is pinned to it)
    object_etag: str | None = None

    @classmethod
    def from_result(
        cls,
        result: ClassificationResult,
        *,
        decided_at: datetime,
        text_source: Literal["transcribe", "client", "model"] | None = None,
        audio_only_reason: ReasonCode | None = None,
        audio_only_detail: str | None = None,
        object_etag: str | None = None,
    ) -> Verdict:
        return cls(
            label=result.label,
            label_ko=result.label_ko,
            is_emergency=result.is_emergency,
            decided_by=result.decided_by,
            emergency_probability=result.emergency_probability,
            probabilities=result.probabilities,
            text_source=text_source if result.text.status == "used" else None,
            audio_only_reason=audio_only_reason,
            audio_only_detail=audio_only_detail,
            bundle_version=result.model.bundle_version,
            trained=result.model.trained,
            recipe=result.model.recipe,
            duration_s=result.duration_s,
            windows=len(result.windows),
            selected_window=result.selected_window,
            inference_ms=result.timings.total_ms,
            decided_at=decided_at,
            object_etag=object_etag,
        )


TranscribeState = Literal["STARTED", "COMPLETED", "FAILED", "SKIPPED"]

#: the stored name of the final verdict a bundle version gave a job: one top-level attribute
#: per version (``verdict@demo-full-seed0-int8``), so that adding a version's verdict is one
#: conditional write whatever the record holds already (a map attribute would need to exist
#: before a write into it, and records written before versions were kept have none)
VERSION_VERDICT_PREFIX = "verdict@"


def version_verdict_attribute(bundle_version: str) -> str:
    return f"{VERSION_VERDICT_PREFIX}{bundle_version}"


class Job(BaseModel):
    """One job record. Unknown attributes are ignored so that newer writers do not break
    older readers."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    job_id: str
    status: JobStatus
    #: who created the record: ``POST /uploads`` (api) or an S3 event (s3)
    source: Literal["api", "s3"] = "s3"
    #: who may read and delete it: ``user:<token subject>`` or ``apikey:<key digest>``
    #: (``POST /uploads``); None for objects dropped into the bucket and backfills
    owner: str | None = None
    created_at: UtcDateTime
    updated_at: UtcDateTime
    expires_at: int
    # the upload (object key decoded, as stored in S3)
    object_key: str | None = None
    extension: str | None = None
    content_type: str | None = None
    size_bytes: int | None = None
    etag: str | None = None
    version_id: str | None = None
    container: str | None = None
    #: the probe's codec where the header names one ("pcm", "pcm_float", "opus"...)
    codec: str | None = None
    probed_duration_s: float | None = None
    #: when another object landed under the job's key after the job took its recording
    #: (the job keeps its own: every read is pinned to `etag`), and that object's ETag
    object_replaced_at: UtcDateTime | None = None
    replacement_etag: str | None = None
    #: a transcript supplied by the client at upload time (then Transcribe is skipped)
    client_transcript: str | None = None
    #: the backfill that created the record (alertfusion.backfill), None for uploads
    backfill_id: str | None = None
    #: the model bundle chosen at ``POST /uploads`` (alertfusion.catalog); None: the default
    bundle: str | None = None
    # Transcribe
    transcribe_job_name: str | None = None
    transcribe_status: TranscribeState | None = None
    transcribe_detail: str | None = None
    # timestamps
    uploaded_at: UtcDateTime | None = None
    received_at: UtcDateTime | None = None
    transcribing_at: UtcDateTime | None = None
    preliminary_at: UtcDateTime | None = None
    final_at: UtcDateTime | None = None
    done_at: UtcDateTime | None = None
    failed_at: UtcDateTime | None = None
    # verdicts
    preliminary: Verdict | None = None
    final: Verdict | None = None
    #: upload (S3 event time) → verdict recorded, milliseconds
    preliminary_latency_ms: float | None = None
    final_latency_ms: float | None = None
    bundle_version: str | None = None
    result_key: str | None = None
    #: bundle version → the final verdict it gave (the pipeline's own, and each backfill's
    #: reclassification with a newer bundle); read from the ``verdict@<version>`` attributes
    stored_verdicts: dict[str, Verdict] = Field(default_factory=dict)
    # failure
    failure_reason: ReasonCode | None = None
    failure_detail: str | None = None
    # emergency alerts (EventBridge), one per stage
    alert_preliminary_sent_at: UtcDateTime | None = None
    alert_final_sent_at: UtcDateTime | None = None
    # sweeper bookkeeping
    sweep_count: int = 0
    last_swept_at: UtcDateTime | None = None
    # deletion (a tombstone: DELETING, then DELETED)
    #: when the owner asked for the deletion
    deleted_at: UtcDateTime | None = None
    #: when the recording, transcript, result file and Transcribe job were all gone
    purged_at: UtcDateTime | None = None

    @model_validator(mode="before")
    @classmethod
    def _collect_version_verdicts(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        found = {
            name[len(VERSION_VERDICT_PREFIX) :]: value
            for name, value in data.items()
            if isinstance(name, str) and name.startswith(VERSION_VERDICT_PREFIX)
        }
        if not found:
            return data
        kept = {k: v for k, v in data.items() if not k.startswith(VERSION_VERDICT_PREFIX)}
        return {**kept, "stored_verdicts": {**data.get("stored_verdicts", {}), **found}}

    @property
    def verdicts(self) -> dict[str, Verdict]:
        """Bundle version → the final verdict it gave this job. A record written before
        versions were kept still has its final verdict, under that verdict's version."""
        out = dict(self.stored_verdicts)
        if self.final is not None:
            out.setdefault(self.final.bundle_version, self.final)
        return out

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def is_deleted(self) -> bool:
        """A tombstone: its owner deleted it."""
        return self.status in DELETION_STATUSES

    def verdict(self, stage: Stage) -> Verdict | None:
        return self.preliminary if stage is Stage.PRELIMINARY else self.final

    def alert_sent_at(self, stage: Stage) -> datetime | None:
        if stage is Stage.PRELIMINARY:
            return self.alert_preliminary_sent_at
        return self.alert_final_sent_at

    def started_at(self) -> datetime:
        """When the pipeline's clock for this job started (hard timeout reference)."""
        return self.received_at or self.created_at


@dataclass(frozen=True)
class UploadInfo:
    """What the starter learned about an uploaded object (from HeadObject + the probe)."""

    object_key: str
    extension: str
    size_bytes: int
    content_type: str | None
    etag: str | None
    version_id: str | None
    uploaded_at: datetime
    container: str | None = None
    codec: str | None = None
    probed_duration_s: float | None = None
    #: the backfill admitting the object (None for an upload)
    backfill_id: str | None = None

    def attributes(self) -> dict[str, Any]:
        return {
            "object_key": self.object_key,
            "extension": self.extension,
            "size_bytes": self.size_bytes,
            "content_type": self.content_type,
            "etag": self.etag,
            "version_id": self.version_id,
            "container": self.container,
            "codec": self.codec,
            "probed_duration_s": self.probed_duration_s,
            "uploaded_at": utc_iso(self.uploaded_at),
            "backfill_id": self.backfill_id,
        }
