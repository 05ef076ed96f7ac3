"""`POST /uploads`: a job and a presigned POST to upload its recording straight to S3."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response

from alertfusion.catalog import check_bundle_name
from alertfusion.errors import AlertFusionError, AudioError, InputError, JobStateError, ReasonCode
from alertfusion.jobs import JobStatus, now_utc
from alertfusion.keys import (
    SUPPORTED_EXTENSIONS,
    extension_for_content_type,
    new_job_id,
    upload_key,
)
from functions.api.deps import (
    CallerDep,
    PipelineDep,
    PipelineResources,
    SettingsDep,
    charge_quota,
    require_caller,
)
from functions.api.errors import error_responses
from functions.api.idempotency import IdempotencyStore, fingerprint
from functions.api.inputs import clean_text
from functions.api.models import PresignedPost, UploadRequest, UploadResponse
from functions.api.settings import ApiSettings

router = APIRouter(tags=["jobs"], dependencies=[Depends(require_caller)])

#: the Content-Type an upload of each extension declares (the policy wants audio/*)
CANONICAL_CONTENT_TYPES: dict[str, str] = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "oga": "audio/ogg",
    "opus": "audio/opus",
    "mp3": "audio/mpeg",
    "m4a": "audio/mp4",
    "mp4": "audio/mp4",
    "3gp": "audio/3gpp",
    "amr": "audio/amr",
    "webm": "audio/webm",
}
#: printable ASCII without spaces, as common idempotency-key implementations accept
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"


def upload_target(body: UploadRequest) -> tuple[str, str]:
    """(extension, Content-Type) of the object: from `content_type`, else `filename`.
    UNSUPPORTED_FORMAT (415) for anything the pipeline does not take."""
    supported = ", ".join(sorted(SUPPORTED_EXTENSIONS))
    if body.content_type:
        ext = extension_for_content_type(body.content_type)
        if ext is None:
            raise AudioError(
                f"content_type {body.content_type[:60]!r} is not a supported recording type "
                f"(audio/wav, audio/mp4, audio/webm, ...; extensions {supported})",
                code=ReasonCode.UNSUPPORTED_FORMAT,
            )
        base = body.content_type.split(";", 1)[0].strip().lower()
        return ext, base if base.startswith("audio/") else CANONICAL_CONTENT_TYPES[ext]
    if body.filename:
        stem, dot, suffix = body.filename.rpartition(".")
        ext = suffix.lower() if dot and stem else ""
        if ext not in SUPPORTED_EXTENSIONS:
            raise AudioError(
                f"the file name has no supported extension ({supported})",
                code=ReasonCode.UNSUPPORTED_FORMAT,
            )
        return ext, CANONICAL_CONTENT_TYPES[ext]
    raise InputError("give content_type or filename", code=ReasonCode.INVALID_INPUT)


def _ensure_job(
    pipeline: PipelineResources,
    job_id: str,
    key: str,
    content_type: str,
    transcript: str | None,
    replayed: bool,
    owner: str | None = None,
    bundle: str | None = None,
) -> JobStatus:
    """The job's status, creating the record (`owner`'s) unless a replayed request made it
    already (a first attempt that crashed between the claim and this write made none)."""
    if replayed:
        job = pipeline.store.get(job_id)
        if job is not None:
            if job.is_deleted:
                raise AlertFusionError(
                    "the job this Idempotency-Key made was deleted; use a new key",
                    code=ReasonCode.IDEMPOTENCY_CONFLICT,
                )
            return job.status
    try:
        return pipeline.store.create_pending(
            job_id,
            object_key=key,
            content_type=content_type,
            client_transcript=transcript,
            owner=owner,
            bundle=bundle,
        ).status
    except JobStateError:
        # a concurrent replay created it a moment ago
        job = pipeline.store.get(job_id)
        if job is None:
            raise
        return job.status


@router.post(
    "/uploads",
    status_code=201,
    response_model=UploadResponse,
    summary="Start an asynchronous job: a presigned POST for the recording",
    responses={
        200: {"model": UploadResponse, "description": "replay of an Idempotency-Key"},
        **error_responses(401, 413, 415, 422, 429, 500, 503),
    },
)
def create_upload(
    request: Request,
    response: Response,
    body: UploadRequest,
    settings: SettingsDep,
    pipeline: PipelineDep,
    caller: CallerDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="repeat a request safely: the same key and body give the same job "
            "(200, with a fresh presigned POST while the job waits for its upload, none "
            "after); the same key with another body is 422 IDEMPOTENCY_CONFLICT",
        ),
    ] = None,
) -> UploadResponse:
    """Creates a job (UPLOAD_PENDING) and answers a presigned **POST** for
    `uploads/{job_id}.{ext}`: its policy pins the key and the Content-Type, allows 1 byte
    to MAX_UPLOAD_BYTES, and expires after UPLOAD_URL_EXPIRES_SECONDS (2 minutes). A job
    takes one recording: a replayed Idempotency-Key gets a fresh POST while the job waits
    for its upload, and `upload: null` once it has it. Poll `poll_url` (`GET
    /jobs/{job_id}`) afterwards. A `transcript` skips Transcribe. `bundle` names the
    bundle that classifies it (`GET /bundles`); one without a text model never starts
    Transcribe."""
    bundle = check_bundle_name(body.bundle)
    ext, content_type = upload_target(body)
    transcript = clean_text(body.transcript, settings.max_text_chars)
    if body.transcript is not None and transcript is None:
        raise InputError(
            "transcript is empty: leave it out to have Transcribe make one",
            code=ReasonCode.INVALID_INPUT,
        )
    job_id, replayed = new_job_id(), False
    owner = caller.owner
    if idempotency_key is None:
        charge_quota(pipeline, settings, caller, "uploads")
    else:
        idempotency = IdempotencyStore(
            pipeline.settings.jobs_table,
            pipeline.dynamodb,
            ttl_days=pipeline.settings.job_ttl_days,
        )
        body_print = fingerprint(body.model_dump_json())
        # a replay of a job already made (and counted) does not count again
        if not idempotency.replay_of(idempotency_key, body_print, owner=owner):
            charge_quota(pipeline, settings, caller, "uploads")
        claim = idempotency.claim(idempotency_key, body_print, job_id, owner=owner)
        job_id, replayed = claim.job_id, claim.replayed
    key = upload_key(job_id, ext)
    status = _ensure_job(pipeline, job_id, key, content_type, transcript, replayed, owner, bundle)

    poll_url = public_url(request, settings, request.app.url_path_for("get_job", job_id=job_id))
    response.headers["Location"] = poll_url
    response.headers["Cache-Control"] = "no-store"
    if replayed:
        response.status_code = 200
    return UploadResponse(
        job_id=job_id,
        status=status,
        # S3 cannot refuse a second object under the key (a POST policy has no "once"): the
        # starter refuses it (alertfusion.pipeline.starter), and no POST is handed out again
        upload=_presigned_post(pipeline, settings, key, content_type)
        if status is JobStatus.UPLOAD_PENDING
        else None,
        poll_url=poll_url,
        transcript_supplied=transcript is not None,
        replayed=replayed,
    )


def _presigned_post(
    pipeline: PipelineResources, settings: ApiSettings, key: str, content_type: str
) -> PresignedPost:
    """A POST for exactly `key`, with exactly `content_type`, of 1 byte to MAX_UPLOAD_BYTES,
    valid for UPLOAD_URL_EXPIRES_SECONDS: everything a POST policy can pin."""
    max_bytes = pipeline.settings.max_upload_bytes
    expires = settings.upload_url_expires_seconds
    issued = now_utc()
    post = pipeline.s3.generate_presigned_post(
        Bucket=pipeline.settings.audio_bucket,
        Key=key,
        Fields={"Content-Type": content_type},
        Conditions=[
            {"Content-Type": content_type},
            ["content-length-range", 1, max_bytes],
        ],
        ExpiresIn=expires,
    )
    return PresignedPost(
        url=post["url"],
        fields=post["fields"],
        key=key,
        content_type=content_type,
        max_bytes=max_bytes,
        expires_at=issued + timedelta(seconds=expires),
    )


def public_url(request: Request, settings: ApiSettings, path: str) -> str:
    """`path` of this API as clients should use it, never built from the client's Host
    header: under PUBLIC_BASE_URL when set; behind API Gateway (which routed the request by
    its own host) on the gateway's host and stage; else the path on this server (a relative
    reference, as RFC 9110 allows in Location)."""
    if settings.public_base_url:
        return settings.public_base_url + path
    if "aws.event" in request.scope:  # Mangum: the gateway's host, with its stage prefix
        return str(request.base_url).rstrip("/") + path
    return str(request.scope.get("root_path") or "") + path
