"""The asynchronous pipeline's steps, as the Lambda handlers call them.

* :func:`handle_upload` (starter, one S3 record): validate, record the job, queue the audio
  stage, start Transcribe.
* :func:`run_audio_stage` (classifier, ``audio_stage`` task): the preliminary audio-only
  verdict; with ``TRANSCRIBE_POLICY=gated`` it then starts Transcribe only for a
  non-regular verdict (else the job is DONE with the audio-only verdict); with a transcript
  supplied by the client it writes the fused final verdict directly.
* :func:`finalize_job` (classifier, Transcribe event or ``finalize`` task): the final
  verdict from transcript + audio, audio-only when Transcribe failed or heard nothing.
* :func:`sweep` (sweeper, on a schedule): re-drives jobs whose events were lost and ends
  jobs past the hard limit FAILED/TIMEOUT.

Every step is idempotent and safe to run twice, concurrently or out of order: the job
record only moves forward (conditional writes), each verdict is written once, Transcribe
is started under a name derived from the job id, and alerts are sent-then-marked
(alertfusion.notify). Permanent input problems end the job FAILED with a reason code;
anything transient raises, for the caller's retry (Lambda, SQS, EventBridge).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from alertfusion import aws
from alertfusion.errors import (
    AlertFusionError,
    AudioError,
    InputError,
    ReasonCode,
    TextError,
    TransientError,
)
from alertfusion.jobs import (
    Job,
    JobStatus,
    JobStore,
    Stage,
    UploadInfo,
    Verdict,
    now_utc,
)
from alertfusion.keys import (
    SUPPORTED_EXTENSIONS,
    decode_event_key,
    job_id_for_upload,
    parse_upload_key,
    result_key,
    transcribe_job_name,
    transcript_key,
)
from alertfusion.notify import publish_pending_alerts
from alertfusion.observability import count, logger, milliseconds, tracer
from alertfusion.probe import (
    TRANSCRIBE_MEDIA_FORMATS,
    ProbeResult,
    S3RangeReader,
    probe_audio,
    read_object_head,
)
from alertfusion.protocols import Classifier
from alertfusion.result import ClassificationResult
from alertfusion.settings import PipelineSettings, pipeline_settings
from alertfusion.tasks import AudioStageTask, FinalizeTask, encode_task
from alertfusion.transcribe import (
    StartOutcome,
    TranscribeRequestError,
    TranscriptError,
    get_transcription,
    read_transcript,
    start_transcription,
)

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.s3_event import S3EventRecord


# --- dependencies ----------------------------------------------------------------------------


@dataclass
class PipelineContext:
    """Settings, job store and AWS clients the steps use (one per process)."""

    settings: PipelineSettings
    store: JobStore
    s3: Any
    transcribe: Any
    events: Any
    sqs: Any
    #: sleep between Transcribe retries (tests inject a no-op)
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def from_environment(cls) -> PipelineContext:
        settings = pipeline_settings()
        return cls(
            settings=settings,
            store=JobStore(settings.jobs_table, aws.dynamodb(), ttl_days=settings.job_ttl_days),
            s3=aws.s3(),
            transcribe=aws.transcribe(),
            events=aws.events(),
            sqs=aws.sqs(),
        )


_context: PipelineContext | None = None


def get_context() -> PipelineContext:
    """The process-wide context, built on first use from the environment."""
    global _context
    if _context is None:
        _context = PipelineContext.from_environment()
    return _context


def reset_context(session: Any = None) -> None:
    """Forget the cached context, settings and clients (tests; `session`: see
    alertfusion.aws.reset_clients)."""
    global _context
    _context = None
    pipeline_settings.cache_clear()
    aws.reset_clients(session)


# --- outcomes ------------------------------------------------------------------------------

UploadAction = Literal["accepted", "rejected", "duplicate", "ignored"]
TranscribeAction = Literal["started", "already_started", "skipped", "deferred", "refused"]
StageAction = Literal["recorded", "already_recorded", "failed", "not_found", "not_ready", "final"]


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
    stage: Literal["audio_stage", "finalize"]
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
    job_ids: dict[str, list[str]] = field(default_factory=dict)

    def note(self, action: str, job_id: str) -> None:
        self.job_ids.setdefault(action, []).append(job_id)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- helpers -------------------------------------------------------------------------------

#: Content-Types that can carry audio; anything else (text/*, image/*, JSON...) is refused
_AUDIO_LIKE_TYPES = frozenset(
    {"application/ogg", "application/octet-stream", "binary/octet-stream", ""}
)
#: an estimated duration (CBR MP3) may be this far off before the bounds refuse it
_ESTIMATE_SLACK = 0.1


def _audio_like(content_type: str | None) -> bool:
    base = (content_type or "").split(";", 1)[0].strip().lower()
    return base.startswith(("audio/", "video/")) or base in _AUDIO_LIKE_TYPES


def _ms_between(start: datetime | None, end: datetime) -> float | None:
    if start is None:
        return None
    return max(0.0, (end - start).total_seconds() * 1000.0)


def _parse_event_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def _client_error_code(exc: Exception) -> str | None:
    response = getattr(exc, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


def _send_task(ctx: PipelineContext, task: AudioStageTask | FinalizeTask) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        ctx.sqs.send_message(QueueUrl=ctx.settings.work_queue_url, MessageBody=encode_task(task))
    except (ClientError, BotoCoreError) as exc:
        raise TransientError(f"SendMessage {task.type} failed: {type(exc).__name__}") from exc


def _flush_alerts(ctx: PipelineContext, job: Job) -> tuple[str, ...]:
    sent = publish_pending_alerts(
        ctx.store, job, events_client=ctx.events, bus_name=ctx.settings.event_bus_name
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


def _load_audio(ctx: PipelineContext, job: Job) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError

    if not job.object_key:
        raise InputError("the job has no uploaded object", code=ReasonCode.OBJECT_NOT_FOUND)
    kwargs: dict[str, Any] = {"Bucket": ctx.settings.audio_bucket, "Key": job.object_key}
    if job.version_id:
        kwargs["VersionId"] = job.version_id
    try:
        response = ctx.s3.get_object(**kwargs)
    except ClientError as exc:
        if _client_error_code(exc) in ("NoSuchKey", "NoSuchVersion", "404", "NotFound"):
            raise InputError(
                f"the upload {job.object_key} no longer exists", code=ReasonCode.OBJECT_NOT_FOUND
            ) from exc
        raise TransientError(f"GetObject: {_client_error_code(exc)}") from exc
    except BotoCoreError as exc:
        raise TransientError(f"GetObject: {type(exc).__name__}") from exc
    limit = ctx.settings.max_upload_bytes
    if int(response.get("ContentLength") or 0) > limit:
        response["Body"].close()
        raise AudioError(f"the upload is larger than {limit} bytes", code=ReasonCode.FILE_TOO_LARGE)
    body = response["Body"]
    try:
        return bytes(body.read())
    finally:
        body.close()


def _filename(job: Job) -> str | None:
    return job.object_key.rsplit("/", 1)[-1] if job.object_key else None


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


# --- starter -------------------------------------------------------------------------------


def _validate(
    ctx: PipelineContext, extension: str, size: int, content_type: str | None, reader: Any
) -> ProbeResult:
    """The probe of an acceptable upload; an AudioError with the reason otherwise."""
    s = ctx.settings
    if extension not in SUPPORTED_EXTENSIONS:
        shown = f".{extension}" if extension else "no extension"
        raise AudioError(
            f"{shown} is not a supported audio file ({', '.join(sorted(SUPPORTED_EXTENSIONS))})",
            code=ReasonCode.UNSUPPORTED_FORMAT,
        )
    if size <= 0:
        raise AudioError("the uploaded object is empty", code=ReasonCode.EMPTY_AUDIO)
    if size > s.max_upload_bytes:
        raise AudioError(
            f"the upload has {size} bytes, more than the limit of {s.max_upload_bytes}",
            code=ReasonCode.FILE_TOO_LARGE,
        )
    if not _audio_like(content_type):
        raise AudioError(
            f"Content-Type {content_type!r} is not audio", code=ReasonCode.UNSUPPORTED_FORMAT
        )
    probe = probe_audio(reader, max_seconds=s.max_audio_seconds)
    if probe.duration_s is not None:
        slack = 0.0 if probe.exact else _ESTIMATE_SLACK
        if probe.duration_s < s.min_audio_seconds * (1 - slack):
            raise AudioError(
                f"the recording lasts {probe.duration_s:.2f} s; at least "
                f"{s.min_audio_seconds:g} s are needed",
                code=ReasonCode.TOO_SHORT,
            )
        if probe.duration_s > s.max_audio_seconds * (1 + slack):
            raise AudioError(
                f"the recording lasts {probe.duration_s:.1f} s; at most "
                f"{s.max_audio_seconds:g} s are accepted",
                code=ReasonCode.TOO_LONG,
            )
    return probe


@tracer.capture_method(capture_response=False)
def handle_upload(record: S3EventRecord, *, ctx: PipelineContext | None = None) -> UploadOutcome:
    """One S3 ``ObjectCreated`` record: validate the object (size, type and header probe
    from S3 itself; the event is not trusted), record the job, queue the audio stage,
    start Transcribe.

    Rejections end the job FAILED with a reason and start nothing. Safe to repeat: a
    redelivered record finds the job and does nothing, or completes what a crashed attempt
    left undone. Transient trouble raises.
    """
    ctx = ctx or get_context()
    started = time.perf_counter()
    s3_object = record.s3.get_object
    key = decode_event_key(s3_object.key)
    bucket = record.s3.bucket.name
    if bucket != ctx.settings.audio_bucket:
        logger.warning("record for another bucket ignored", extra={"bucket": bucket})
        return UploadOutcome(key, None, "ignored", detail="not the pipeline's bucket")
    ref = parse_upload_key(key)
    if ref is None:
        return UploadOutcome(key, None, "ignored", detail="not an object under uploads/")
    job_id = job_id_for_upload(
        ref,
        version_id=s3_object.version_id,
        etag=s3_object.etag,
        sequencer=s3_object.get("sequencer"),
    )
    with logger.append_context_keys(job_id=job_id, stage="starter"):
        outcome = _handle_upload(ctx, record, ref.extension, key, job_id)
        milliseconds("StageDurationMs", (time.perf_counter() - started) * 1000, stage="starter")
        logger.info("upload handled", extra=outcome.as_dict())
        return outcome


def _handle_upload(
    ctx: PipelineContext, record: S3EventRecord, extension: str, key: str, job_id: str
) -> UploadOutcome:
    from botocore.exceptions import BotoCoreError, ClientError

    # No read first: a new upload (the common case) would pay for it; a duplicate finds out
    # from the conditional write at the end and only costs one ranged GET.
    store, settings = ctx.store, ctx.settings
    now = now_utc()
    uploaded_at = _parse_event_time(record.get("eventTime")) or now
    version_id = record.s3.get_object.version_id
    try:
        head = read_object_head(ctx.s3, settings.audio_bucket, key, version_id=version_id)
    except ClientError as exc:
        if _client_error_code(exc) in ("404", "NoSuchKey", "NotFound", "NoSuchVersion"):
            # deleted (or replaced by a later upload) before this record was handled
            detail = "the object was deleted before it could be processed"
            if store.reject(job_id, ReasonCode.OBJECT_NOT_FOUND, detail, now=now) is None:
                return _not_applied(ctx, key, job_id)
            count("JobsFailed", reason=ReasonCode.OBJECT_NOT_FOUND.value, stage="starter")
            return UploadOutcome(key, job_id, "rejected", ReasonCode.OBJECT_NOT_FOUND, detail)
        raise TransientError(f"GetObject: {_client_error_code(exc)}") from exc
    except BotoCoreError as exc:
        raise TransientError(f"GetObject: {type(exc).__name__}") from exc
    size, content_type = head.size, head.content_type
    reader = S3RangeReader(
        ctx.s3, settings.audio_bucket, key, size, version_id=version_id, prefetched=head.head
    )
    probe: ProbeResult | None = None
    rejection: AudioError | None = None
    try:
        probe = _validate(ctx, extension, size, content_type, reader)
    except AudioError as exc:
        rejection = exc
    upload = UploadInfo(
        object_key=key,
        extension=extension,
        size_bytes=size,
        content_type=content_type,
        etag=head.etag,
        version_id=version_id,
        uploaded_at=uploaded_at,
        container=probe.format if probe else None,
        probed_duration_s=probe.duration_s if probe else None,
    )
    if rejection is not None:
        if store.reject(job_id, rejection.code, rejection.message, upload=upload, now=now) is None:
            return _not_applied(ctx, key, job_id)
        count("JobsFailed", reason=rejection.code.value, stage="starter")
        return UploadOutcome(key, job_id, "rejected", rejection.code, rejection.message)
    job = store.receive(job_id, upload, now=now)
    if job is None:
        return _not_applied(ctx, key, job_id)
    count("UploadsAccepted")
    # The task goes out before Transcribe starts: if this attempt dies after either step,
    # the retry still finds the job RECEIVED and repeats both (a second task is harmless).
    _send_task(ctx, AudioStageTask(job_id=job_id))
    transcribe: TranscribeAction
    if job.client_transcript is not None:
        store.note_transcribe(job_id, "SKIPPED", detail="the client supplied the transcript")
        transcribe = "skipped"
    elif settings.transcribe_policy == "gated":
        transcribe = "deferred"  # the audio stage starts it for a non-regular verdict
    else:
        transcribe = _ensure_transcription(ctx, job)
    return UploadOutcome(key, job_id, "accepted", transcribe=transcribe)


def _not_applied(ctx: PipelineContext, key: str, job_id: str) -> UploadOutcome:
    """The job refused the write: a duplicate event, or another object with this job id."""
    current = ctx.store.get(job_id)
    if current is not None and current.object_key not in (None, key):
        logger.warning("another object claims this job id; ignored")
        return UploadOutcome(key, job_id, "ignored", detail="job belongs to another object")
    status = current.status.value if current else "missing"
    return UploadOutcome(key, job_id, "duplicate", detail=f"job is {status}")


# --- classifier stages ---------------------------------------------------------------------


def _classify(
    ctx: PipelineContext,
    job: Job,
    classifier: Classifier,
    audio: bytes,
    text: str | None,
) -> tuple[ClassificationResult, TextError | None]:
    """Classify; a transcript the engine refuses (too long...) gives an audio-only result
    and the TextError that says why."""
    if text is None:
        return classifier.classify(audio, filename=_filename(job)), None
    try:
        return classifier.classify(audio, filename=_filename(job), text=text), None
    except TextError as exc:
        logger.warning("transcript refused by the engine", extra={"reason": exc.code.value})
        return classifier.classify(audio, filename=_filename(job)), exc


def _write_result_file(ctx: PipelineContext, job_id: str, result: ClassificationResult) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    key = result_key(job_id)
    try:
        ctx.s3.put_object(
            Bucket=ctx.settings.audio_bucket,
            Key=key,
            Body=result.model_dump_json().encode("utf-8"),
            ContentType="application/json",
        )
    except (ClientError, BotoCoreError) as exc:
        raise TransientError(f"PutObject {key}: {type(exc).__name__}") from exc
    return key


def _finish(
    ctx: PipelineContext,
    job: Job,
    result: ClassificationResult | None,
    verdict: Verdict,
    *,
    stage: Literal["audio_stage", "finalize"],
    transcribe_status: Literal["COMPLETED", "FAILED", "SKIPPED"],
    transcribe_detail: str | None = None,
) -> StageOutcome:
    """Write the final verdict (once) and end the job DONE, then alert."""
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


def _client_transcript_stage(
    ctx: PipelineContext,
    job: Job,
    transcript: str,
    classifier: Classifier,
    alerts: tuple[str, ...],
) -> StageOutcome:
    """The client sent the transcript: one fused verdict, final at once, no Transcribe."""
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
    verdict = Verdict.from_result(
        result,
        decided_at=now_utc(),
        text_source="client",
        audio_only_reason=text_error.code if text_error else None,
        audio_only_detail=text_error.message if text_error else None,
    )
    done = _finish(ctx, job, result, verdict, stage="audio_stage", transcribe_status="SKIPPED")
    return replace(done, alerts_sent=alerts + done.alerts_sent, transcribe="skipped")


@tracer.capture_method(capture_response=False)
def run_audio_stage(
    job_id: str, classifier: Classifier, *, ctx: PipelineContext | None = None
) -> StageOutcome:
    """The ``audio_stage`` task: record the preliminary (audio-only) verdict, then advance
    the job (see the module docstring). Idempotent; permanent audio problems end the job
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
    alerts = _flush_alerts(ctx, job)  # what a crashed earlier attempt left unsent
    if job.status is JobStatus.FAILED:
        return StageOutcome(job_id, "audio_stage", "final", status=job.status, alerts_sent=alerts)
    if job.status is JobStatus.UPLOAD_PENDING:
        logger.warning("audio stage before the upload was validated; nothing to do")
        return StageOutcome(job_id, "audio_stage", "not_ready", status=job.status)

    if job.client_transcript is not None:
        return _client_transcript_stage(ctx, job, job.client_transcript, classifier, alerts)

    action: StageAction = "already_recorded"
    result: ClassificationResult | None = None
    if job.preliminary is None:
        try:
            audio = _load_audio(ctx, job)
            result = classifier.classify(audio, filename=_filename(job))
        except Exception as exc:
            if _is_permanent(exc):
                assert isinstance(exc, AlertFusionError)
                return _fail_outcome(ctx, job, exc, "audio_stage")
            raise
        verdict = Verdict.from_result(result, decided_at=now_utc())
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
    if job.status is JobStatus.RECEIVED and preliminary is not None:
        if settings.transcribe_policy == "gated" and not preliminary.is_emergency:
            final = preliminary.model_copy(
                update={
                    "audio_only_reason": ReasonCode.TRANSCRIBE_SKIPPED,
                    "audio_only_detail": "TRANSCRIBE_POLICY=gated and the audio verdict is regular",
                    "decided_at": now_utc(),
                }
            )
            done = _finish(
                ctx,
                job,
                result,
                final,
                stage="audio_stage",
                transcribe_status="SKIPPED",
                transcribe_detail="gated policy: regular audio",
            )
            return StageOutcome(
                job_id,
                "audio_stage",
                action,
                status=done.status,
                label=preliminary.label,
                alerts_sent=alerts + done.alerts_sent,
                transcribe="skipped",
            )
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


@tracer.capture_method(capture_response=False)
def finalize_job(
    job_id: str,
    transcribe_status: Literal["COMPLETED", "FAILED"],
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
    transcribe_status: Literal["COMPLETED", "FAILED"],
    classifier: Classifier,
    failure_reason: str | None,
) -> StageOutcome:
    store, settings = ctx.store, ctx.settings
    job = store.get(job_id)
    if job is None:
        logger.warning("Transcribe finished for an unknown job")
        return StageOutcome(job_id, "finalize", "not_found")
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
    try:
        audio = _load_audio(ctx, job)
        result, text_error = _classify(ctx, job, classifier, audio, text)
    except Exception as exc:
        if _is_permanent(exc):
            assert isinstance(exc, AlertFusionError)
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


# --- sweeper -------------------------------------------------------------------------------


@tracer.capture_method(capture_response=False)
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
