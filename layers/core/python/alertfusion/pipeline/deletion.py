"""Deleting a job: a tombstone first, then its recording, transcript, result file and
Transcribe job; late events and the sweeper finish what could not go at once.

Order: the tombstone (`JobStore.tombstone`, one conditional PutItem that drops every verdict
and transcript from the record) comes first, so no pipeline write applies to the job any
more (every write is conditioned on a state a tombstone never has). Then the purge deletes
``uploads/…``, ``transcripts/{id}.json``, ``results/{id}.json`` and the Transcribe job.
Transcribe deletes only finished jobs: while one runs the tombstone stays DELETING, and
whichever comes next finishes the purge — the job's completion event (the classifier),
or the sweeper — and only then is it DELETED. Anything written for the job after the
tombstone (a result file of a classification that was already running, a transcript, an
upload through a presigned POST issued before) is deleted by the step that finds the
tombstone: a deleted job never comes back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from alertfusion.errors import NotFoundError, ReasonCode, TransientError
from alertfusion.jobs import Job, JobStatus, JobStore
from alertfusion.keys import result_key, transcribe_job_name, transcript_key
from alertfusion.observability import count, logger
from alertfusion.settings import PipelineSettings
from alertfusion.transcribe import delete_transcription, get_transcription

#: how often a deletion re-reads a job the pipeline keeps moving before it gives up
_TOMBSTONE_ATTEMPTS = 5


@dataclass(frozen=True)
class PurgeReport:
    job_id: str
    #: the keys deleted (S3 answers a delete of a missing key the same way)
    objects: tuple[str, ...]
    #: what became of the Transcribe job: deleted, never existed (or gone), still running
    transcribe: Literal["deleted", "absent", "running"]

    @property
    def complete(self) -> bool:
        return self.transcribe != "running"


def job_object_keys(job: Job) -> list[str]:
    """Every object the pipeline may have written for `job`."""
    keys = [job.object_key] if job.object_key else []
    return [*keys, transcript_key(job.job_id), result_key(job.job_id)]


def delete_object(s3: Any, bucket: str, key: str) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        s3.delete_object(Bucket=bucket, Key=key)
    except (ClientError, BotoCoreError) as exc:
        raise TransientError(f"DeleteObject {key}: {type(exc).__name__}") from exc


def purge(
    job: Job,
    *,
    store: JobStore,
    s3: Any,
    transcribe: Any,
    bucket: str,
    transcribe_job_prefix: str,
    now: datetime | None = None,
) -> PurgeReport:
    """Delete what remains of a deleted `job` (idempotent); a DELETING tombstone becomes
    DELETED once nothing but the tombstone remains. The Transcribe job goes first: while it
    runs, it may still write the transcript, so the objects are deleted again once it ended."""
    name = job.transcribe_job_name or transcribe_job_name(job.job_id, transcribe_job_prefix)
    info = get_transcription(transcribe, name)
    state: Literal["deleted", "absent", "running"]
    if info is None:
        state = "absent"
    elif not info.finished:
        state = "running"
    else:
        state = "deleted" if delete_transcription(transcribe, name) else "absent"
    keys = job_object_keys(job)
    for key in keys:
        delete_object(s3, bucket, key)
    report = PurgeReport(job.job_id, tuple(keys), state)
    if report.complete and job.status is JobStatus.DELETING:
        if store.mark_purged(job.job_id, now=now) is not None:
            count("JobsPurged")
    logger.info(
        "deleted job purged" if report.complete else "deleted job partly purged",
        extra={"job_id": job.job_id, "objects": len(keys), "transcribe": state},
    )
    return report


def delete_job(
    job: Job,
    *,
    store: JobStore,
    s3: Any,
    transcribe: Any,
    bucket: str,
    transcribe_job_prefix: str,
    now: datetime | None = None,
) -> Job:
    """Tombstone `job` (re-reading it while the pipeline moves it on), then purge it; the
    tombstone as it ends (DELETED, or DELETING while Transcribe still runs). Deleting a
    deleted job purges again: harmless, and it finishes a purge that was cut short."""
    current = job
    for _ in range(_TOMBSTONE_ATTEMPTS):
        if current.is_deleted:
            break
        written = store.tombstone(current, now=now)
        if written is not None:
            count("JobsDeleted")
            logger.info("job deleted", extra={"job_id": job.job_id, "was": current.status})
            current = written
            break
        found = store.get(job.job_id)
        if found is None:
            raise NotFoundError(f"no job {job.job_id}", code=ReasonCode.JOB_NOT_FOUND)
        current = found
    else:
        raise TransientError("the job kept changing while it was being deleted; retry")
    purge(
        current,
        store=store,
        s3=s3,
        transcribe=transcribe,
        bucket=bucket,
        transcribe_job_prefix=transcribe_job_prefix,
        now=now,
    )
    return store.get(job.job_id) or current


class JobClients(Protocol):
    """What deleting a job uses: the pipeline's context, or the API's resources."""

    @property
    def settings(self) -> PipelineSettings: ...

    @property
    def store(self) -> JobStore: ...

    @property
    def s3(self) -> Any: ...

    @property
    def transcribe(self) -> Any: ...


def _with(clients: JobClients) -> dict[str, Any]:
    return {
        "store": clients.store,
        "s3": clients.s3,
        "transcribe": clients.transcribe,
        "bucket": clients.settings.audio_bucket,
        "transcribe_job_prefix": clients.settings.transcribe_job_prefix,
    }


def delete_in(clients: JobClients, job: Job) -> Job:
    """`delete_job` with the pipeline's clients (`DELETE /jobs/{id}`, the command line)."""
    return delete_job(job, **_with(clients))


def purge_deleted(clients: JobClients, job: Job) -> PurgeReport:
    """`purge` with the pipeline's clients: what a step does when it finds a tombstone."""
    return purge(job, **_with(clients))
