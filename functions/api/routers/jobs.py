"""`GET /jobs/{job_id}`: status, verdicts, reason codes and timings of a job;
`DELETE /jobs/{job_id}`: its recording, transcript, result file and Transcribe job deleted.

A job is its owner's (alertfusion.jobs.Job.owner): anyone else gets 404 JOB_NOT_FOUND, as
for an id that does not exist, never 403 (which would confirm the id exists)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from starlette.concurrency import run_in_threadpool

from alertfusion.errors import NotFoundError, ReasonCode
from alertfusion.jobs import Job, now_utc
from alertfusion.keys import JOB_ID_RE
from functions.api.auth import Principal
from functions.api.deps import (
    CallerDep,
    PipelineDep,
    PipelineResources,
    SettingsDep,
    require_caller,
)
from functions.api.errors import error_responses
from functions.api.models import JobFailure, JobObject, JobTimings, JobTranscribe, JobView
from functions.api.polling import retry_after

router = APIRouter(tags=["jobs"], dependencies=[Depends(require_caller)])

JobIdPath = Annotated[
    str,
    Path(
        pattern=JOB_ID_RE.pattern,
        description="the 26-character id `POST /uploads` answered (anything else: 422)",
        examples=["01JD3W7Q5V2ZK8F9X4M6N0P1RS"],
    ),
]


def _callers_job(pipeline: PipelineResources, job_id: str, caller: Principal) -> Job:
    """The job, if it is the caller's; JOB_NOT_FOUND for a missing job and for another's."""
    job = pipeline.store.get(job_id)
    if job is None or not caller.may_see(job.owner):
        raise NotFoundError(f"no job {job_id}", code=ReasonCode.JOB_NOT_FOUND)
    return job


def job_view(job: Job, retry: int | None) -> JobView:
    reasons: list[ReasonCode] = []
    if job.failure_reason is not None:
        reasons.append(job.failure_reason)
    if job.final is not None and job.final.audio_only_reason is not None:
        reasons.append(job.final.audio_only_reason)
    return JobView(
        job_id=job.job_id,
        status=job.status,
        is_final=job.is_final,
        source=job.source,
        object_key=job.object_key,
        bundle=job.bundle,
        object=(
            JobObject(etag=job.etag, replaced_at=job.object_replaced_at)
            if job.etag is not None
            else None
        ),
        duration_s=job.probed_duration_s,
        preliminary=job.preliminary,
        final=job.final,
        reason_codes=reasons,
        failure=(
            JobFailure(reason=job.failure_reason, detail=job.failure_detail)
            if job.failure_reason is not None
            else None
        ),
        transcribe=(
            JobTranscribe(status=job.transcribe_status, detail=job.transcribe_detail)
            if job.transcribe_status is not None
            else None
        ),
        timings=JobTimings(
            created_at=job.created_at,
            updated_at=job.updated_at,
            uploaded_at=job.uploaded_at,
            received_at=job.received_at,
            transcribing_at=job.transcribing_at,
            preliminary_at=job.preliminary_at,
            final_at=job.final_at,
            done_at=job.done_at,
            failed_at=job.failed_at,
            deleted_at=job.deleted_at,
            purged_at=job.purged_at,
            preliminary_latency_ms=job.preliminary_latency_ms,
            final_latency_ms=job.final_latency_ms,
        ),
        retry_after_seconds=retry,
    )


@router.get(
    "/jobs/{job_id}",
    name="get_job",
    response_model=JobView,
    summary="A job's status, verdicts, reason codes and timings",
    responses=error_responses(401, 404, 422, 500, 503),
)
async def get_job(
    job_id: JobIdPath,
    response: Response,
    pipeline: PipelineDep,
    settings: SettingsDep,
    caller: CallerDep,
) -> JobView:
    """While the job is not final the answer carries `Retry-After` (seconds; see
    `retry_after_seconds`). Unknown ids, and another caller's jobs, are 404 JOB_NOT_FOUND; a
    deleted job answers its tombstone (status DELETING or DELETED, `timings.deleted_at`)."""
    job = await run_in_threadpool(_callers_job, pipeline, job_id, caller)
    retry = retry_after(job, now_utc(), settings.transcribe_expected_seconds)
    response.headers["Cache-Control"] = "no-store"
    if retry is not None:
        response.headers["Retry-After"] = str(retry)
    return job_view(job, retry)


def _delete(pipeline: PipelineResources, job_id: str, caller: Principal) -> Job:
    from alertfusion.pipeline.deletion import delete_in

    return delete_in(pipeline, _callers_job(pipeline, job_id, caller))


@router.delete(
    "/jobs/{job_id}",
    name="delete_job",
    response_model=JobView,
    summary="Delete a job's recording, transcript, result and Transcribe job",
    responses=error_responses(401, 404, 422, 500, 503),
)
async def delete_job(
    job_id: JobIdPath, response: Response, pipeline: PipelineDep, caller: CallerDep
) -> JobView:
    """The owner deletes the job: its recording (`uploads/`), transcript (`transcripts/`),
    result file (`results/`) and Transcribe job go now; the record becomes a tombstone that
    keeps only when the job was made and deleted (and disappears with the record's TTL). A
    Transcribe job still running cannot be deleted yet: the tombstone then says DELETING
    until its completion event (or the sweeper) deletes it and the transcript it wrote, then
    DELETED. No late event or sweep brings a deleted job back. Repeating the call is safe."""
    tombstone = await run_in_threadpool(_delete, pipeline, job_id, caller)
    response.headers["Cache-Control"] = "no-store"
    return job_view(tombstone, None)
