"""S3 and SQS as the steps use them, with botocore's errors mapped to the pipeline's.

A job's audio is read pinned to the object the starter checked (``If-Match`` on its ETag,
``VersionId`` where it has one). A missing upload, or another object in its place, is a
permanent InputError (OBJECT_NOT_FOUND, OBJECT_REPLACED); any other client error is a
TransientError, for the caller's retry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alertfusion.aws import S3_CHANGED_CODES, S3_NOT_FOUND_CODES, error_code, if_match
from alertfusion.errors import AudioError, InputError, ReasonCode, TransientError
from alertfusion.jobs import Job
from alertfusion.keys import result_key
from alertfusion.pipeline.context import PipelineContext
from alertfusion.result import ClassificationResult
from alertfusion.tasks import AudioStageTask, FinalizeTask, encode_task


def _send_task(ctx: PipelineContext, task: AudioStageTask | FinalizeTask) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        ctx.sqs.send_message(QueueUrl=ctx.settings.work_queue_url, MessageBody=encode_task(task))
    except (ClientError, BotoCoreError) as exc:
        raise TransientError(f"SendMessage {task.type} failed: {type(exc).__name__}") from exc


@dataclass(frozen=True)
class JobAudio:
    """A job's recording as read: its bytes and the ETag S3 sent with them."""

    data: bytes
    etag: str | None


def _load_audio(ctx: PipelineContext, job: Job) -> JobAudio:
    from botocore.exceptions import BotoCoreError, ClientError

    if not job.object_key:
        raise InputError("the job has no uploaded object", code=ReasonCode.OBJECT_NOT_FOUND)
    kwargs: dict[str, Any] = {
        "Bucket": ctx.settings.audio_bucket,
        "Key": job.object_key,
        **if_match(job.etag),
    }
    if job.version_id:
        kwargs["VersionId"] = job.version_id
    try:
        response = ctx.s3.get_object(**kwargs)
    except ClientError as exc:
        code = error_code(exc)
        if code in S3_NOT_FOUND_CODES:
            raise InputError(
                f"the upload {job.object_key} no longer exists", code=ReasonCode.OBJECT_NOT_FOUND
            ) from exc
        if code in S3_CHANGED_CODES:
            raise InputError(
                f"another object replaced {job.object_key}; the job's recording is gone",
                code=ReasonCode.OBJECT_REPLACED,
            ) from exc
        raise TransientError(f"GetObject: {code}") from exc
    except BotoCoreError as exc:
        raise TransientError(f"GetObject: {type(exc).__name__}") from exc
    limit = ctx.settings.max_upload_bytes
    if int(response.get("ContentLength") or 0) > limit:
        response["Body"].close()
        raise AudioError(f"the upload is larger than {limit} bytes", code=ReasonCode.FILE_TOO_LARGE)
    body = response["Body"]
    try:
        data = bytes(body.read())
    finally:
        body.close()
    etag = str(response.get("ETag") or "").strip('"') or None
    return JobAudio(data, etag)


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
