"""The classifier's steps: the preliminary (audio-only) verdict of the ``audio_stage`` task,
and the final verdict once Transcribe is done (see the package docstring)."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime
from typing import Literal

from alertfusion.errors import AlertFusionError, ReasonCode, TextError
from alertfusion.jobs import Job, JobStatus, Stage, Verdict, now_utc
from alertfusion.keys import transcribe_job_name, transcript_key
from alertfusion.notify import publish_pending_alerts
from alertfusion.observability import count, logger, milliseconds
from alertfusion.pipeline.context import PipelineContext, get_context
from alertfusion.pipeline.deletion import purge_deleted
from alertfusion.pipeline.outcomes import StageAction, StageOutcome, TranscribeAction
from alertfusion.pipeline.storage import JobAudio, _load_audio, _write_result_file
from alertfusion.pipeline.transcription import _ensure_transcription
from alertfusion.protocols import Classifier
from alertfusion.result import ClassificationResult
from alertfusion.transcribe import (
    TerminalStatus,
    TranscriptError,
    get_transcription,
    read_transcript,
)


def _ms_between(start: datetime | None, end: datetime) -> float | None:
    if start is None:
        return None
    return max(0.0, (end - start).total_seconds() * 1000.0)


def _flush_alerts(ctx: PipelineContext, job: Job) -> tuple[str, ...]:
    sent = publish_pending_alerts(
        ctx.store,
        job,
        events_client=ctx.events,
        bus_name=ctx.settings.event_bus_name,
        sleep=ctx.sleep,
    )
    for stage in sent:
        count("EmergencyAlertsSent", stage=stage.value)
        logger.info("emergency alert sent", extra={"alert_stage": stage.value})
    return tuple(stage.value for stage in sent)


def _record_failure(
    ctx: PipelineContext, job_id: str, error: AlertFusionError, stage: str
) -> Job | None:
    failed = ctx.store.fail(job_id, error.code, error.message)
    if failed is not None:
        count("JobsFailed", reason=error.code.value, stage=stage)
        logger.warning("job failed", extra={"reason": error.code.value})
    return failed


def _filename(job: Job) -> str | None:
    return job.object_key.rsplit("/", 1)[-1] if job.object_key else None


def _classify(
    ctx: PipelineContext,
    job: Job,
    classifier: Classifier,
    audio: JobAudio,
    text: str | None,
) -> tuple[ClassificationResult, TextError | None]:
    """Classify; a transcript the engine refuses (too long...) gives an audio-only result
    and the TextError that says why."""
    if text is None:
        return classifier.classify(audio.data, filename=_filename(job)), None
    try:
        return classifier.classify(audio.data, filename=_filename(job), text=text), None
    except TextError as exc:
        logger.warning("transcript refused by the engine", extra={"reason": exc.code.value})
        return classifier.classify(audio.data, filename=_filename(job)), exc


def _finish(
    ctx: PipelineContext,
    job: Job,
    result: ClassificationResult | None,
    verdict: Verdict,
    *,
    stage: Literal["audio_stage", "finalize"],
    transcribe_status: Literal["COMPLETED", "FAILED", "SKIPPED"] | None,
    transcribe_detail: str | None = None,
) -> StageOutcome:
    """Write the final verdict (once) and end the job DONE, then alert (`transcribe_status`
    None: Transcribe's state stays as it is)."""
    key = _write_result_file(ctx, job.job_id, result) if result is not None else None
    latency = _ms_between(job.uploaded_at, verdict.decided_at)
    written = ctx.store.finish(
        job.job_id,
        verdict,
        latency_ms=latency,
        result_key=key,
        transcribe_status=transcribe_status,
        transcribe_detail=transcribe_detail,
    )
    current = written or ctx.store.get(job.job_id)
    assert current is not None
    if current.is_deleted:
        # deleted while this verdict was being made: its result file must not stay
        return _deleted(ctx, current, stage)
    if written is not None:
        count("Verdicts", stage=Stage.FINAL.value, label=verdict.label)
        if latency is not None:
            milliseconds("UploadToVerdictMs", latency, stage=Stage.FINAL.value)
        logger.info(
            "final verdict recorded",
            extra={
                "label": verdict.label,
                "latency_ms": latency,
                "audio_only": verdict.audio_only_reason,
            },
        )
    alerts = _flush_alerts(ctx, current)
    return StageOutcome(
        job.job_id,
        stage,
        "recorded" if written is not None else "already_recorded",
        status=current.status,
        label=(current.final or verdict).label,
        reason=verdict.audio_only_reason,
        alerts_sent=alerts,
    )


def _fail_outcome(
    ctx: PipelineContext,
    job: Job,
    error: AlertFusionError,
    stage: Literal["audio_stage", "finalize"],
) -> StageOutcome:
    current = _record_failure(ctx, job.job_id, error, stage) or ctx.store.get(job.job_id)
    return StageOutcome(
        job.job_id,
        stage,
        "failed",
        status=current.status if current else None,
        reason=error.code,
    )


def _is_permanent(exc: Exception) -> bool:
    return isinstance(exc, AlertFusionError) and exc.permanent


def _deleted(
    ctx: PipelineContext, job: Job, stage: Literal["audio_stage", "finalize", "reclassify"]
) -> StageOutcome:
    """The owner deleted the job: no verdict; what was left behind goes (pipeline.deletion)."""
    purge_deleted(ctx, job)
    count("DeletedJobEvents", stage=stage)
    logger.info("job deleted: nothing to do but purge", extra={"status": job.status.value})
    current = ctx.store.get(job.job_id) or job
    return StageOutcome(job.job_id, stage, "deleted", status=current.status)


def _classifier_for(job: Job, classifier: Classifier) -> Classifier:
    """The classifier of the job's bundle: the handler's (the default bundle's) unless the
    job named another at ``POST /uploads`` (alertfusion.catalog; UNKNOWN_BUNDLE, permanent,
    when this deployment no longer serves it)."""
    if job.bundle is None:
        return classifier
    from alertfusion.engine import get_engine

    return get_engine(job.bundle)


def _single_stage(
    ctx: PipelineContext,
    job: Job,
    classifier: Classifier,
    alerts: tuple[str, ...],
    *,
    transcript: str | None,
) -> StageOutcome:
    """One fused verdict, final at once, no Transcribe: the client sent the `transcript`, or
    (None) the engine transcribes with the bundle's own speech-to-text model in this one
    invocation."""
    if job.final is not None or job.is_final:
        return StageOutcome(
            job.job_id, "audio_stage", "already_recorded", status=job.status, alerts_sent=alerts
        )
    try:
        audio = _load_audio(ctx, job)
        result, text_error = _classify(ctx, job, classifier, audio, transcript)
    except Exception as exc:
        if _is_permanent(exc):
            assert isinstance(exc, AlertFusionError)
            return _fail_outcome(ctx, job, exc, "audio_stage")
        raise
    reason: ReasonCode | None = text_error.code if text_error else None
    detail: str | None = text_error.message if text_error else None
    transcribe_detail: str | None = None
    if transcript is None:
        reason, detail = _model_transcript_gap(result)
        transcribe_detail = "the bundle's speech-to-text model transcribed"
    verdict = Verdict.from_result(
        result,
        decided_at=now_utc(),
        text_source="client" if transcript is not None else "model",
        audio_only_reason=reason,
        audio_only_detail=detail,
        object_etag=audio.etag,
    )
    done = _finish(
        ctx, job, result, verdict, stage="audio_stage", transcribe_status="SKIPPED",
        transcribe_detail=transcribe_detail,
    )  # fmt: skip
    return replace(done, alerts_sent=alerts + done.alerts_sent, transcribe="skipped")


def _model_transcript_gap(result: ClassificationResult) -> tuple[ReasonCode | None, str | None]:
    """Why a verdict meant to fuse the bundle's own transcript has no text, if it has none."""
    heard = result.transcript
    if heard is None or heard.source != "model":
        detail = "TRANSCRIPT_SOURCE=model, but the bundle's recipe has no speech-to-text model"
        logger.error(detail, extra={"bundle": result.model.bundle_version})
        return ReasonCode.TRANSCRIBE_SKIPPED, detail
    if not heard.text:
        return ReasonCode.TRANSCRIPT_EMPTY, "the speech-to-text model heard no words"
    return None, None


def run_audio_stage(
    job_id: str, classifier: Classifier, *, ctx: PipelineContext | None = None
) -> StageOutcome:
    """The ``audio_stage`` task: record the preliminary (audio-only) verdict, then advance
    the job (see the package docstring). Idempotent; permanent audio problems end the job
    FAILED; transient ones raise."""
    ctx = ctx or get_context()
    started = time.perf_counter()
    with logger.append_context_keys(job_id=job_id, stage="audio_stage"):
        outcome = _run_audio_stage(ctx, job_id, classifier)
        milliseconds("StageDurationMs", (time.perf_counter() - started) * 1000, stage="audio_stage")
        logger.info("audio stage done", extra=outcome.as_dict())
        return outcome


def _run_audio_stage(ctx: PipelineContext, job_id: str, classifier: Classifier) -> StageOutcome:
    store, settings = ctx.store, ctx.settings
    job = store.get(job_id)
    if job is None:
        logger.error("audio stage for an unknown job")
        return StageOutcome(job_id, "audio_stage", "not_found")
    if job.is_deleted:
        return _deleted(ctx, job, "audio_stage")
    alerts = _flush_alerts(ctx, job)  # what a crashed earlier attempt left unsent
    if job.status is JobStatus.FAILED:
        return StageOutcome(job_id, "audio_stage", "final", status=job.status, alerts_sent=alerts)
    if job.status is JobStatus.UPLOAD_PENDING:
        logger.warning("audio stage before the upload was validated; nothing to do")
        return StageOutcome(job_id, "audio_stage", "not_ready", status=job.status)
    try:
        classifier = _classifier_for(job, classifier)
    except AlertFusionError as exc:
        if exc.permanent:
            return _fail_outcome(ctx, job, exc, "audio_stage")
        raise

    if job.client_transcript is not None:
        return _single_stage(ctx, job, classifier, alerts, transcript=job.client_transcript)
    if classifier.transcribes or (job.bundle is None and settings.transcript_source == "model"):
        # the bundle's own speech-to-text model (its recipe says so, or, for the default
        # bundle, the deployment)
        return _single_stage(ctx, job, classifier, alerts, transcript=None)

    action: StageAction = "already_recorded"
    result: ClassificationResult | None = None
    if job.preliminary is None:
        try:
            audio = _load_audio(ctx, job)
            result = classifier.classify(audio.data, filename=_filename(job))
        except Exception as exc:
            if _is_permanent(exc):
                assert isinstance(exc, AlertFusionError)
                return _fail_outcome(ctx, job, exc, "audio_stage")
            raise
        verdict = Verdict.from_result(result, decided_at=now_utc(), object_etag=audio.etag)
        latency = _ms_between(job.uploaded_at, verdict.decided_at)
        written = store.set_preliminary(job_id, verdict, latency_ms=latency)
        if written is not None:
            action = "recorded"
            count("Verdicts", stage=Stage.PRELIMINARY.value, label=verdict.label)
            if latency is not None:
                milliseconds("UploadToVerdictMs", latency, stage=Stage.PRELIMINARY.value)
            logger.info(
                "preliminary verdict recorded",
                extra={"label": verdict.label, "latency_ms": latency},
            )
        refreshed = written or store.get(job_id)
        assert refreshed is not None
        job = refreshed
        alerts += _flush_alerts(ctx, job)

    preliminary = job.preliminary
    transcribe: TranscribeAction | None = None
    waiting = job.status in (JobStatus.RECEIVED, JobStatus.TRANSCRIBING)
    if waiting and preliminary is not None:
        skip: tuple[str, str] | None = None
        if not classifier.has_text_model:
            # nothing reads a transcript: the audio verdict is final (a Transcribe job a
            # starter without the bundle's manifest started is not waited for)
            skip = ("the recipe has no text model", "the recipe has no text model")
        elif job.status is JobStatus.RECEIVED and (
            settings.transcribe_policy == "gated" and not preliminary.is_emergency
        ):
            skip = (
                "TRANSCRIBE_POLICY=gated and the audio verdict is regular",
                "gated policy: regular audio",
            )
        if skip is not None:
            final = preliminary.model_copy(
                update={
                    "audio_only_reason": ReasonCode.TRANSCRIBE_SKIPPED,
                    "audio_only_detail": skip[0],
                    "decided_at": now_utc(),
                }
            )
            started = job.status is JobStatus.TRANSCRIBING
            done = _finish(
                ctx,
                job,
                result,
                final,
                stage="audio_stage",
                transcribe_status=None if started else "SKIPPED",
                transcribe_detail=None if started else skip[1],
            )
            return StageOutcome(
                job_id,
                "audio_stage",
                action,
                status=done.status,
                label=preliminary.label,
                alerts_sent=alerts + done.alerts_sent,
                transcribe=None if started else "skipped",
            )
    if job.status is JobStatus.RECEIVED and preliminary is not None:
        if job.transcribe_status is None:
            # gated and an alert, or the starter never got to start it (crash, re-drive)
            transcribe = _ensure_transcription(ctx, job)
    current = store.get(job_id) if transcribe is not None else job
    return StageOutcome(
        job_id,
        "audio_stage",
        action,
        status=current.status if current else None,
        label=preliminary.label if preliminary else None,
        alerts_sent=alerts,
        transcribe=transcribe,
    )


def finalize_job(
    job_id: str,
    transcribe_status: TerminalStatus,
    classifier: Classifier,
    *,
    failure_reason: str | None = None,
    ctx: PipelineContext | None = None,
) -> StageOutcome:
    """Transcribe finished: the final verdict from transcript + audio. A FAILED job or an
    empty/unreadable transcript gives an audio-only final verdict that says why (the job is
    still DONE). Idempotent: a redelivered event changes nothing."""
    ctx = ctx or get_context()
    started = time.perf_counter()
    with logger.append_context_keys(job_id=job_id, stage="finalize"):
        outcome = _finalize_job(ctx, job_id, transcribe_status, classifier, failure_reason)
        milliseconds("StageDurationMs", (time.perf_counter() - started) * 1000, stage="finalize")
        logger.info("finalize done", extra=outcome.as_dict())
        return outcome


def _finalize_job(
    ctx: PipelineContext,
    job_id: str,
    transcribe_status: TerminalStatus,
    classifier: Classifier,
    failure_reason: str | None,
) -> StageOutcome:
    store, settings = ctx.store, ctx.settings
    job = store.get(job_id)
    if job is None:
        logger.warning("Transcribe finished for an unknown job")
        return StageOutcome(job_id, "finalize", "not_found")
    if job.is_deleted:  # a late Transcribe event: its transcript and job go, no verdict
        return _deleted(ctx, job, "finalize")
    alerts = _flush_alerts(ctx, job)
    if job.final is not None or job.is_final:
        action: StageAction = "already_recorded" if job.final is not None else "final"
        return StageOutcome(
            job_id,
            "finalize",
            action,
            status=job.status,
            label=job.final.label if job.final else None,
            alerts_sent=alerts,
        )
    if job.status is JobStatus.UPLOAD_PENDING:
        return StageOutcome(job_id, "finalize", "not_ready", status=job.status)
    try:
        classifier = _classifier_for(job, classifier)
    except AlertFusionError as exc:
        if exc.permanent:
            return _fail_outcome(ctx, job, exc, "finalize")
        raise

    text: str | None = None
    reason: ReasonCode | None = None
    detail: str | None = None
    if transcribe_status == "COMPLETED":
        try:
            transcript = read_transcript(ctx.s3, settings.audio_bucket, transcript_key(job_id))
        except TranscriptError as exc:
            reason, detail = exc.code, exc.message
        else:
            if transcript.strip():
                text = transcript
            else:
                reason, detail = ReasonCode.TRANSCRIPT_EMPTY, "Transcribe heard no words"
    else:
        reason = ReasonCode.TRANSCRIBE_FAILED
        detail = failure_reason or job.transcribe_detail or _failure_reason(ctx, job)
        detail = f"Transcribe failed: {detail}" if detail else "Transcribe failed"
    if text is not None and job.object_replaced_at is not None:
        # Transcribe reads the key, not the job's ETag: its transcript may be the other
        # object's (alertfusion.pipeline.starter)
        text, reason, detail = None, ReasonCode.OBJECT_REPLACED, _REPLACED_TRANSCRIPT
    try:
        audio = _load_audio(ctx, job)
        result, text_error = _classify(ctx, job, classifier, audio, text)
    except Exception as exc:
        if _is_permanent(exc):
            assert isinstance(exc, AlertFusionError)
            if exc.code is ReasonCode.OBJECT_REPLACED and job.preliminary is not None:
                outcome = _finish_replaced(ctx, job, transcribe_status)
                return replace(outcome, alerts_sent=alerts + outcome.alerts_sent)
            return _fail_outcome(ctx, job, exc, "finalize")
        raise
    if text_error is not None:
        reason, detail = text_error.code, f"the transcript could not be used: {text_error.message}"
    verdict = Verdict.from_result(
        result,
        decided_at=now_utc(),
        text_source="transcribe" if text is not None and text_error is None else None,
        audio_only_reason=reason,
        audio_only_detail=detail,
        object_etag=audio.etag,
    )
    outcome = _finish(
        ctx,
        job,
        result,
        verdict,
        stage="finalize",
        transcribe_status=transcribe_status,
        transcribe_detail=detail if transcribe_status == "FAILED" else None,
    )
    return replace(outcome, alerts_sent=alerts + outcome.alerts_sent)


_REPLACED_TRANSCRIPT = (
    "another object landed under the job's key while Transcribe ran; Transcribe reads the "
    "key, so its transcript may describe that object and is not used"
)


def _finish_replaced(
    ctx: PipelineContext, job: Job, transcribe_status: TerminalStatus
) -> StageOutcome:
    """The job's recording was replaced after its preliminary verdict: its final verdict is
    that audio-only verdict of its own bytes, with reason OBJECT_REPLACED (the transcript is
    not used: Transcribe may have read the other object)."""
    assert job.preliminary is not None
    final = job.preliminary.model_copy(
        update={
            "audio_only_reason": ReasonCode.OBJECT_REPLACED,
            "audio_only_detail": "another object replaced the job's recording; the final "
            "verdict is its audio-only verdict, the transcript is not used",
            "decided_at": now_utc(),
        }
    )
    count("JobsReplaced", stage="finalize")
    return _finish(ctx, job, None, final, stage="finalize", transcribe_status=transcribe_status)


def _failure_reason(ctx: PipelineContext, job: Job) -> str | None:
    """Transcribe's FailureReason, best effort (the event does not always carry it)."""
    name = job.transcribe_job_name or transcribe_job_name(
        job.job_id, ctx.settings.transcribe_job_prefix
    )
    try:
        info = get_transcription(ctx.transcribe, name)
    except Exception:  # only a detail for the record: never fail the verdict over it
        return None
    return info.failure_reason if info else None


def reclassify_job(
    job_id: str,
    bundle_version: str,
    classifier: Classifier,
    *,
    ctx: PipelineContext | None = None,
) -> StageOutcome:
    """The ``reclassify`` task (a backfill naming a bundle version): the final verdict of the
    bundle this classifier serves, from the audio and what the job already has for text (its
    Transcribe transcript, or the client's), kept beside the job's other verdicts. The job's
    state, its own final verdict and its alerts do not change, and Transcribe is never
    started: a job whose first verdict skipped Transcribe gets an audio-only verdict again.
    A classifier serving another version refuses the task (``wrong_bundle``: redelivering it
    cannot help, so it is not raised). Idempotent: the version's verdict is written once."""
    ctx = ctx or get_context()
    started = time.perf_counter()
    with logger.append_context_keys(job_id=job_id, stage="reclassify"):
        outcome = _reclassify_job(ctx, job_id, bundle_version, classifier)
        milliseconds("StageDurationMs", (time.perf_counter() - started) * 1000, stage="reclassify")
        logger.info("reclassify done", extra=outcome.as_dict())
        return outcome


def _reclassify_job(
    ctx: PipelineContext, job_id: str, bundle_version: str, classifier: Classifier
) -> StageOutcome:
    store, settings = ctx.store, ctx.settings
    job = store.get(job_id)
    if job is None:
        return StageOutcome(job_id, "reclassify", "not_found")
    if job.is_deleted:
        return _deleted(ctx, job, "reclassify")
    if job.status is not JobStatus.DONE:
        action: StageAction = "final" if job.is_final else "not_ready"
        return StageOutcome(job_id, "reclassify", action, status=job.status)
    existing = job.verdicts.get(bundle_version)
    if existing is not None:
        return StageOutcome(
            job_id, "reclassify", "already_recorded", status=job.status, label=existing.label
        )
    served = classifier.spec.bundle_version
    if served != bundle_version:
        count("ReclassifyRefused", reason="wrong_bundle")
        logger.error(
            "reclassify task for another bundle version",
            extra={"asked": bundle_version, "served": served},
        )
        return StageOutcome(job_id, "reclassify", "wrong_bundle", status=job.status)

    text: str | None = None
    reason: ReasonCode | None = None
    detail: str | None = None
    source: Literal["transcribe", "client"] | None = None
    replaced = job.final is not None and job.final.audio_only_reason is ReasonCode.OBJECT_REPLACED
    if job.client_transcript is not None:
        text, source = job.client_transcript, "client"
    elif job.transcribe_status == "COMPLETED" and not replaced:
        try:
            transcript = read_transcript(ctx.s3, settings.audio_bucket, transcript_key(job_id))
        except TranscriptError as exc:
            reason, detail = exc.code, exc.message
        else:
            if transcript.strip():
                text, source = transcript, "transcribe"
            else:
                reason, detail = ReasonCode.TRANSCRIPT_EMPTY, "Transcribe heard no words"
    elif job.final is not None and job.final.audio_only_reason is not None:
        # the first verdict had no text either (Transcribe failed, skipped by policy...)
        reason, detail = job.final.audio_only_reason, job.final.audio_only_detail
    try:
        audio = _load_audio(ctx, job)
        result, text_error = _classify(ctx, job, classifier, audio, text)
    except Exception as exc:
        if _is_permanent(exc):
            # the object changed or vanished since the job was DONE: the job stays DONE
            assert isinstance(exc, AlertFusionError)
            count("ReclassifyRefused", reason=exc.code.value)
            logger.warning("reclassify impossible", extra={"reason": exc.code.value})
            return StageOutcome(job_id, "reclassify", "failed", status=job.status, reason=exc.code)
        raise
    if text_error is not None:
        reason, detail = text_error.code, f"the transcript could not be used: {text_error.message}"
    verdict = Verdict.from_result(
        result,
        decided_at=now_utc(),
        text_source=source if text is not None and text_error is None else None,
        audio_only_reason=reason,
        audio_only_detail=detail,
        object_etag=audio.etag,
    )
    written = store.add_version_verdict(job_id, verdict)
    if written is not None:
        count("Verdicts", stage="reclassify", label=verdict.label)
    return StageOutcome(
        job_id,
        "reclassify",
        "recorded" if written is not None else "already_recorded",
        status=JobStatus.DONE,
        label=verdict.label,
        reason=verdict.audio_only_reason,
    )
