"""What each step returns: the outcome of one upload, one stage, one sweep."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from alertfusion.errors import ReasonCode
from alertfusion.jobs import JobStatus

#: ``replaced``: another object under the key of a job that took its recording (refused);
#: ``superseded``: the event's object was replaced before it was read (its successor's
#: event names the job's object)
UploadAction = Literal["accepted", "rejected", "duplicate", "replaced", "superseded", "ignored"]
TranscribeAction = Literal["started", "already_started", "skipped", "deferred", "refused"]
StageAction = Literal[
    "recorded",
    "already_recorded",
    "failed",
    "not_found",
    "not_ready",
    "final",
    "wrong_bundle",
    "deleted",
]


@dataclass(frozen=True)
class UploadOutcome:
    object_key: str
    job_id: str | None
    action: UploadAction
    reason: ReasonCode | None = None
    detail: str | None = None
    transcribe: TranscribeAction | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class StageOutcome:
    job_id: str
    stage: Literal["audio_stage", "finalize", "reclassify"]
    action: StageAction
    status: JobStatus | None = None
    label: str | None = None
    reason: ReasonCode | None = None
    alerts_sent: tuple[str, ...] = ()
    transcribe: TranscribeAction | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, ())}


@dataclass
class SweepReport:
    checked: int = 0
    finalize_sent: int = 0
    audio_stage_sent: int = 0
    still_running: int = 0
    timed_out: int = 0
    moved_on: int = 0
    #: deleted jobs whose purge the sweeper finished (Transcribe had still been running)
    purged: int = 0
    job_ids: dict[str, list[str]] = field(default_factory=dict)

    def note(self, action: str, job_id: str) -> None:
        self.job_ids.setdefault(action, []).append(job_id)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
