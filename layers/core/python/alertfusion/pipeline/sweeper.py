"""The sweeper's step: re-drive jobs whose events were lost, end the hopeless ones
FAILED/TIMEOUT."""

from __future__ import annotations

from datetime import datetime, timedelta

from alertfusion.errors import ReasonCode
from alertfusion.jobs import Job, JobStatus, now_utc
from alertfusion.keys import transcribe_job_name
from alertfusion.observability import count, logger
from alertfusion.pipeline.context import PipelineContext, get_context
from alertfusion.pipeline.deletion import purge_deleted
from alertfusion.pipeline.outcomes import SweepReport
from alertfusion.pipeline.storage import _send_task
from alertfusion.tasks import AudioStageTask, FinalizeTask
from alertfusion.transcribe import get_transcription


def sweep(
    now: datetime | None = None, *, ctx: PipelineContext | None = None, limit: int = 500
) -> SweepReport:
    """Finish what lost events left pending.

    * TRANSCRIBING past ``STUCK_AFTER_SECONDS`` (since the last write): ask Transcribe;
      finished (or unknown to it) → a ``finalize`` task; still running → leave it.
    * RECEIVED past the same deadline (the audio stage never ran, or Transcribe was never
      started): a new ``audio_stage`` task, which records the verdict and starts Transcribe.
    * Any of those past ``HARD_TIMEOUT_SECONDS`` since the upload → FAILED/TIMEOUT.
    * UPLOAD_PENDING past ``HARD_TIMEOUT_SECONDS`` (no upload ever came) → FAILED/TIMEOUT.
    * DELETING past ``STUCK_AFTER_SECONDS`` (deleted while Transcribe ran, and its completion
      event was lost): purge again; DELETED once Transcribe's job could go too. A tombstone
      is never moved anywhere else.
    """
    ctx = ctx or get_context()
    moment = now or now_utc()
    settings, store = ctx.settings, ctx.store
    stuck_before = moment - timedelta(seconds=settings.stuck_after_seconds)
    hard = timedelta(seconds=settings.hard_timeout_seconds)
    report = SweepReport()
    with logger.append_context_keys(stage="sweeper"):
        for status in (JobStatus.TRANSCRIBING, JobStatus.RECEIVED):
            for job_id in store.stuck(status, stuck_before, limit=limit):
                job = store.get(job_id)
                if job is None or job.status is not status:
                    report.moved_on += 1
                    continue
                report.checked += 1
                _sweep_job(ctx, job, moment, hard, report)
        for job_id in store.stuck(JobStatus.UPLOAD_PENDING, moment - hard, limit=limit):
            job = store.get(job_id)
            if job is None or job.status is not JobStatus.UPLOAD_PENDING:
                report.moved_on += 1
                continue
            report.checked += 1
            detail = f"no upload arrived within {settings.hard_timeout_seconds} s"
            if store.fail(job_id, ReasonCode.TIMEOUT, detail, now=moment):
                _timed_out(report, job_id, JobStatus.UPLOAD_PENDING)
        for job_id in store.stuck(JobStatus.DELETING, stuck_before, limit=limit):
            job = store.get(job_id)
            if job is None or job.status is not JobStatus.DELETING:
                report.moved_on += 1
                continue
            report.checked += 1
            if purge_deleted(ctx, job).complete:
                report.purged += 1
                report.note("purged", job_id)
                count("SweeperActions", action="purged")
            else:
                store.mark_swept(job_id, JobStatus.DELETING, now=moment)
        logger.info(
            "sweep done", extra={k: v for k, v in report.as_dict().items() if k != "job_ids"}
        )
    return report


def _timed_out(report: SweepReport, job_id: str, status: JobStatus) -> None:
    report.timed_out += 1
    report.note("timed_out", job_id)
    count("JobsFailed", reason=ReasonCode.TIMEOUT.value, stage="sweeper")
    count("SweeperActions", action="timed_out")
    logger.warning("job timed out", extra={"job_id": job_id, "was": status.value})


def _sweep_job(
    ctx: PipelineContext, job: Job, now: datetime, hard: timedelta, report: SweepReport
) -> None:
    store = ctx.store
    with logger.append_context_keys(job_id=job.job_id):
        if now - job.started_at() > hard:
            detail = (
                f"not finished {int(hard.total_seconds())} s after the upload "
                f"(stuck in {job.status.value})"
            )
            if store.fail(job.job_id, ReasonCode.TIMEOUT, detail, now=now):
                _timed_out(report, job.job_id, job.status)
            return
        if job.status is JobStatus.TRANSCRIBING:
            name = job.transcribe_job_name or transcribe_job_name(
                job.job_id, ctx.settings.transcribe_job_prefix
            )
            info = get_transcription(ctx.transcribe, name)
            if info is not None and not info.finished:
                report.still_running += 1
                report.note("still_running", job.job_id)
                return
            if info is None:
                task = FinalizeTask(
                    job_id=job.job_id,
                    origin="sweeper",
                    transcribe_status="FAILED",
                    failure_reason="Transcribe has no job of this name",
                )
            else:
                task = FinalizeTask(
                    job_id=job.job_id,
                    origin="sweeper",
                    transcribe_status="COMPLETED" if info.status == "COMPLETED" else "FAILED",
                    failure_reason=info.failure_reason,
                )
            _send_task(ctx, task)
            report.finalize_sent += 1
            report.note("finalize_sent", job.job_id)
            count("SweeperActions", action="finalize_sent")
        else:
            _send_task(ctx, AudioStageTask(job_id=job.job_id, origin="sweeper"))
            report.audio_stage_sent += 1
            report.note("audio_stage_sent", job.job_id)
            count("SweeperActions", action="audio_stage_sent")
        store.mark_swept(job.job_id, job.status, now=now)
