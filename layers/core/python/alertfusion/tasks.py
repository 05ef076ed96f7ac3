"""Work-queue messages (SQS, consumed by the classifier): ``audio_stage``, ``finalize`` and
``reclassify``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from alertfusion.errors import InputError, ReasonCode
from alertfusion.keys import JOB_ID_RE
from alertfusion.transcribe import TerminalStatus

JobId = Annotated[str, Field(pattern=JOB_ID_RE.pattern)]
TASK_SCHEMA_VERSION: Literal[1] = 1


class _Task(BaseModel):
    # extra="ignore": a newer producer may add fields; an older consumer still works
    model_config = ConfigDict(extra="ignore", frozen=True)

    v: Literal[1] = TASK_SCHEMA_VERSION
    job_id: JobId
    #: who sent it: the starter after an upload, the sweeper re-driving a stuck job, or a
    #: backfill's state machine (alertfusion.backfill)
    origin: Literal["starter", "sweeper", "backfill"] = "starter"
    sent_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class AudioStageTask(_Task):
    """Record the preliminary (audio-only) verdict, then advance the job (policy-dependent)."""

    type: Literal["audio_stage"] = "audio_stage"


class FinalizeTask(_Task):
    """Transcribe has finished (or never will): write the final verdict."""

    type: Literal["finalize"] = "finalize"
    transcribe_status: TerminalStatus
    #: Transcribe's FailureReason when known
    failure_reason: str | None = Field(None, max_length=2000)


class ReclassifyTask(_Task):
    """A DONE job classified again by the bundle the classifier serves (a backfill with a
    newer bundle version): the verdict is kept beside the job's others, its state and its
    own final verdict do not change, and Transcribe is never started for it."""

    type: Literal["reclassify"] = "reclassify"
    #: the version the backfill asked for; a classifier serving another one refuses the task
    bundle_version: str = Field(..., min_length=1, max_length=200)


AnyTask = AudioStageTask | FinalizeTask | ReclassifyTask
WorkTask = Annotated[AnyTask, Field(discriminator="type")]
_ADAPTER: TypeAdapter[AnyTask] = TypeAdapter(WorkTask)


def parse_task(body: str | bytes) -> AnyTask:
    """Parse an SQS message body; anything malformed is an INVALID_INPUT error (permanent:
    redelivering the same bytes cannot help)."""
    try:
        return _ADAPTER.validate_json(body)
    except ValidationError as exc:
        raise InputError(
            f"not a work-queue task: {exc.error_count()} problem(s): "
            + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()),
            code=ReasonCode.INVALID_INPUT,
        ) from exc


def encode_task(task: AnyTask) -> str:
    return task.model_dump_json()
