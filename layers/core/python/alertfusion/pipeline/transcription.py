"""Starting Transcribe for a job, shared by the starter and the audio stage."""

from __future__ import annotations

from alertfusion.jobs import Job
from alertfusion.keys import transcribe_job_name, transcript_key
from alertfusion.observability import count, logger
from alertfusion.pipeline.context import PipelineContext
from alertfusion.pipeline.outcomes import TranscribeAction
from alertfusion.pipeline.storage import _send_task
from alertfusion.probe import TRANSCRIBE_MEDIA_FORMATS
from alertfusion.tasks import FinalizeTask
from alertfusion.transcribe import StartOutcome, TranscribeRequestError, start_transcription


def _ensure_transcription(ctx: PipelineContext, job: Job) -> TranscribeAction:
    """Start Transcribe for `job` (idempotent) and mark it TRANSCRIBING."""
    settings = ctx.settings
    name = transcribe_job_name(job.job_id, settings.transcribe_job_prefix)
    media_format = TRANSCRIBE_MEDIA_FORMATS.get(job.container) if job.container else None
    try:
        started = start_transcription(
            ctx.transcribe,
            job_name=name,
            media_uri=f"s3://{settings.audio_bucket}/{job.object_key}",
            media_format=media_format,
            language=settings.transcribe_language,
            output_bucket=settings.audio_bucket,
            output_key=transcript_key(job.job_id),
            sleep=ctx.sleep,
        )
    except TranscribeRequestError as exc:
        # Transcribe will never take this file: the job still gets its audio-only verdict
        ctx.store.note_transcribe(job.job_id, "FAILED", job_name=name, detail=exc.message)
        _send_task(
            ctx,
            FinalizeTask(job_id=job.job_id, transcribe_status="FAILED", failure_reason=exc.message),
        )
        count("TranscribeStarts", outcome="refused")
        logger.warning("Transcribe refused the job", extra={"transcribe_job": name})
        return "refused"
    ctx.store.mark_transcribing(job.job_id, name)
    count("TranscribeStarts", outcome=started.value)
    return "started" if started is StartOutcome.STARTED else "already_started"
