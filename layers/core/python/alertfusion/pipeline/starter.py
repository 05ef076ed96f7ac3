"""The starter's step: one S3 upload record → a validated job, its audio-stage task and
Transcribe (see the package docstring).

One recording, one verdict. A job takes exactly one object: the one the starter finds in
place under the key with the ETag the S3 event announces, read with ``If-Match`` on that
ETag. The job records it (ETag, and the version id where the bucket has versions) and every
later read of the job's audio is pinned to it. What happens to other objects:

* The event's object is gone (another object was written over it before the starter read
  it: S3 answers PreconditionFailed): nothing is recorded for a key that names a job
  (``superseded``: the event of the object now in place comes too, and that one is the
  job's); a hand-dropped object, whose job id derives from its ETag, ends FAILED
  ``OBJECT_REPLACED``.
* Another object under the key of a job that took its recording already (the presigned POST
  used twice within its expiry): refused (``replaced``), never classified, no Transcribe
  job; the job notes it (``object_replaced_at``, ``replacement_etag``) and keeps its
  recording. Its reads, pinned to its ETag, then fail where the bytes are gone: the audio
  stage ends it FAILED ``OBJECT_REPLACED``; a final verdict after a replacement is the
  job's own audio-only verdict with reason ``OBJECT_REPLACED`` (Transcribe reads by key
  alone, so its transcript may be of the other object). A DONE job keeps its verdict.
* A hand-dropped key names no job: each object is its own job (its id derives from its
  ETag), so a replacement there is a new job.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from alertfusion.aws import S3_CHANGED_CODES, S3_NOT_FOUND_CODES, error_code
from alertfusion.errors import AlertFusionError, AudioError, ReasonCode, TransientError
from alertfusion.jobs import Job, UploadInfo, now_utc
from alertfusion.keys import (
    SUPPORTED_EXTENSIONS,
    decode_event_key,
    job_id_for_upload,
    parse_upload_key,
)
from alertfusion.observability import count, logger, milliseconds
from alertfusion.pipeline.context import PipelineContext, get_context
from alertfusion.pipeline.deletion import delete_object
from alertfusion.pipeline.outcomes import TranscribeAction, UploadOutcome
from alertfusion.pipeline.storage import _send_task
from alertfusion.pipeline.transcription import _ensure_transcription
from alertfusion.probe import ProbeResult, S3RangeReader, probe_audio, read_object_head
from alertfusion.tasks import AudioStageTask

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.s3_event import S3EventRecord

#: Content-Types that can carry audio; anything else (text/*, image/*, JSON...) is refused
_AUDIO_LIKE_TYPES = frozenset(
    {"application/ogg", "application/octet-stream", "binary/octet-stream", ""}
)
#: an estimated duration (CBR MP3) may be this far off before the bounds refuse it
_ESTIMATE_SLACK = 0.1
#: codecs whose samples only decoding can judge (alertfusion.probe.wav): Transcribe waits
#: for the audio stage
DECODE_BEFORE_TRANSCRIBE = frozenset({"pcm_float"})
#: why no Transcribe job is started for a bundle that transcribes itself
MODEL_TRANSCRIBES = "the bundle's speech-to-text model transcribes (its recipe's transcript_source)"


def _audio_like(content_type: str | None) -> bool:
    base = (content_type or "").split(";", 1)[0].strip().lower()
    return base.startswith(("audio/", "video/")) or base in _AUDIO_LIKE_TYPES


def _has_text_model(job: Job) -> bool:
    """Whether the job's bundle reads a transcript, from its manifest (alertfusion.catalog).
    Where the starter cannot tell (no bundle in its environment, an unreadable manifest), it
    starts Transcribe as for today's system; the audio stage, which has the bundle, never
    starts it for a recipe without a text model."""
    from alertfusion.catalog import has_text_model

    try:
        return has_text_model(job.bundle)
    except AlertFusionError as exc:
        logger.warning("the bundle's manifest is not readable here", extra={"reason": exc.code})
        return True


def _model_transcribes(ctx: PipelineContext, job: Job) -> bool:
    """Whether the job's bundle makes its own transcript: for the default bundle
    TRANSCRIPT_SOURCE=model (set at synth from a baked bundle's recipe), or the recipe in the
    manifest of a bundle this starter is configured with (an S3 bundle, a named one: it
    changes without a deploy). Where the manifest cannot be read, False: Transcribe starts as
    for today's system, and the audio stage, which has the bundle, still gives the one
    verdict of its own model."""
    from alertfusion.catalog import model_transcribes

    if job.bundle is None and ctx.settings.transcript_source == "model":
        return True
    try:
        return model_transcribes(job.bundle)
    except AlertFusionError as exc:
        logger.warning("the bundle's manifest is not readable here", extra={"reason": exc.code})
        return False


def _parse_event_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else None


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


def handle_upload(record: S3EventRecord, *, ctx: PipelineContext | None = None) -> UploadOutcome:
    """One S3 ``ObjectCreated`` record: validate the object (size, type and header probe
    from S3 itself, pinned to the event's ETag), record the job, queue the audio stage,
    start Transcribe (after decoding, for float samples: see `_handle_upload`).

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
        outcome = _handle_upload(
            ctx, record, ref.extension, key, job_id, named=ref.named_job_id is not None
        )
        milliseconds("StageDurationMs", (time.perf_counter() - started) * 1000, stage="starter")
        logger.info("upload handled", extra=outcome.as_dict())
        return outcome


def _handle_upload(
    ctx: PipelineContext,
    record: S3EventRecord,
    extension: str,
    key: str,
    job_id: str,
    *,
    named: bool,
) -> UploadOutcome:
    settings = ctx.settings
    uploaded_at = _parse_event_time(record.get("eventTime"))
    s3_object = record.s3.get_object
    outcome, job = record_object(
        ctx,
        key,
        job_id,
        extension,
        version_id=s3_object.version_id,
        uploaded_at=uploaded_at,
        etag=s3_object.etag or None,
        named=named,
    )
    if job is None:
        return outcome
    count("UploadsAccepted")
    # The task goes out before Transcribe starts: if this attempt dies after either step,
    # the retry still finds the job RECEIVED and repeats both (a second task is harmless).
    _send_task(ctx, AudioStageTask(job_id=job_id))
    transcribe: TranscribeAction
    if job.client_transcript is not None:
        ctx.store.note_transcribe(job_id, "SKIPPED", detail="the client supplied the transcript")
        transcribe = "skipped"
    elif not _has_text_model(job):
        # nothing would read the transcript: the audio stage's verdict is final
        ctx.store.note_transcribe(job_id, "SKIPPED", detail="the recipe has no text model")
        transcribe = "skipped"
    elif _model_transcribes(ctx, job):
        ctx.store.note_transcribe(job_id, "SKIPPED", detail=MODEL_TRANSCRIBES)
        transcribe = "skipped"
    elif settings.transcribe_policy == "gated":
        transcribe = "deferred"  # the audio stage starts it for a non-regular verdict
    elif job.codec in DECODE_BEFORE_TRANSCRIBE:
        # Float samples may be NaN or out of range, which only decoding finds (NOT_FINITE):
        # the audio stage starts Transcribe once its verdict is recorded, never for a
        # recording the decoder refuses.
        transcribe = "deferred"
    else:
        transcribe = _ensure_transcription(ctx, job)
    return UploadOutcome(key, job_id, "accepted", transcribe=transcribe)


def record_object(
    ctx: PipelineContext,
    key: str,
    job_id: str,
    extension: str,
    *,
    version_id: str | None,
    uploaded_at: datetime | None,
    backfill_id: str | None = None,
    etag: str | None = None,
    named: bool = True,
) -> tuple[UploadOutcome, Job | None]:
    """Validate one object of the pipeline's bucket (size, type and header probe, read from
    S3 itself, pinned to `etag` when the event or listing gives one) and record its job:
    RECEIVED (the outcome and the job) or FAILED with the reason (the outcome and None). A
    job that exists already for this object, or that another object claims, is not written
    (``duplicate``/``replaced``/``ignored``, None); an object gone before it was read is
    ``superseded`` where the key names the job (`named`), else its job ends FAILED (module
    docstring). The starter then queues the audio stage and starts Transcribe; a backfill's
    state machine queues the audio stage itself (alertfusion.backfill). Transient trouble
    raises."""
    from botocore.exceptions import BotoCoreError, ClientError

    # No read first: a new upload (the common case) would pay for it; a duplicate finds out
    # from the conditional write at the end and only costs one ranged GET.
    store, settings = ctx.store, ctx.settings
    now = now_utc()
    uploaded_at = uploaded_at or now
    try:
        head = read_object_head(
            ctx.s3, settings.audio_bucket, key, version_id=version_id, etag=etag
        )
    except ClientError as exc:
        code = error_code(exc)
        gone: tuple[ReasonCode, str] | None = None
        if code in S3_NOT_FOUND_CODES:
            gone = (ReasonCode.OBJECT_NOT_FOUND, "the object was deleted before it was processed")
        elif code in S3_CHANGED_CODES:
            gone = (ReasonCode.OBJECT_REPLACED, "another object replaced it before it was read")
        if gone is None:
            raise TransientError(f"GetObject: {code}") from exc
        reason, detail = gone
        if named and reason is ReasonCode.OBJECT_REPLACED:
            # the job is the replacing object's, whose own event comes (or came)
            count("UploadsSuperseded")
            return UploadOutcome(key, job_id, "superseded", reason, detail), None
        if store.reject(job_id, reason, detail, now=now) is None:
            return _not_applied(ctx, key, job_id, etag), None
        count("JobsFailed", reason=reason.value, stage="starter")
        return UploadOutcome(key, job_id, "rejected", reason, detail), None
    except BotoCoreError as exc:
        raise TransientError(f"GetObject: {type(exc).__name__}") from exc
    size, content_type = head.size, head.content_type
    # every later read of this job's audio is pinned to the ETag read here
    reader = S3RangeReader(
        ctx.s3,
        settings.audio_bucket,
        key,
        size,
        version_id=version_id,
        etag=head.etag,
        prefetched=head.head,
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
        codec=probe.codec if probe else None,
        probed_duration_s=probe.duration_s if probe else None,
        backfill_id=backfill_id,
    )
    if rejection is not None:
        if store.reject(job_id, rejection.code, rejection.message, upload=upload, now=now) is None:
            return _not_applied(ctx, key, job_id, head.etag), None
        count("JobsFailed", reason=rejection.code.value, stage="starter")
        return UploadOutcome(key, job_id, "rejected", rejection.code, rejection.message), None
    job = store.receive(job_id, upload, now=now)
    if job is None:
        return _not_applied(ctx, key, job_id, head.etag), None
    return UploadOutcome(key, job_id, "accepted"), job


def _not_applied(ctx: PipelineContext, key: str, job_id: str, etag: str | None) -> UploadOutcome:
    """The job refused the write: a duplicate event, another object under the job's key
    (noted on the job, refused), another key with this job id, or a deleted job (an upload
    through a presigned POST issued before the deletion: the object is deleted too, so a
    deleted job's recording never stays)."""
    current = ctx.store.get(job_id)
    if current is not None and current.is_deleted and current.object_key in (None, key):
        delete_object(ctx.s3, ctx.settings.audio_bucket, key)
        count("DeletedJobUploadsDiscarded")
        logger.info("upload for a deleted job discarded")
        return UploadOutcome(key, job_id, "ignored", detail="the job was deleted")
    if current is not None and current.object_key not in (None, key):
        logger.warning("another object claims this job id; ignored")
        return UploadOutcome(key, job_id, "ignored", detail="job belongs to another object")
    if current is not None and etag and current.etag and current.etag != etag:
        ctx.store.note_replacement(job_id, etag)
        count("ObjectsReplaced")
        logger.warning(
            "another object under the job's key: refused; the job keeps its recording",
            extra={"etag": current.etag, "replacement_etag": etag},
        )
        detail = f"the job took its recording (ETag {current.etag}) already"
        return UploadOutcome(key, job_id, "replaced", ReasonCode.OBJECT_REPLACED, detail)
    status = current.status.value if current else "missing"
    return UploadOutcome(key, job_id, "duplicate", detail=f"job is {status}")
