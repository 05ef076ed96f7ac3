"""The backfill function's steps for the state machine: admit a batch of listed objects,
check its jobs until they are final (then write the batch's results), summarise the run."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from alertfusion.aws import error_code
from alertfusion.backfill.plan import start_delay_seconds
from alertfusion.backfill.summary import (
    AdmitAction,
    BackfillSummary,
    ItemResult,
    ItemState,
    summarize_items,
)
from alertfusion.errors import InputError, ReasonCode, TransientError
from alertfusion.jobs import Job, JobStatus, Verdict, now_utc, utc_iso
from alertfusion.keys import (
    BACKFILL_PREFIX,
    RESULT_PREFIX,
    TRANSCRIPT_PREFIX,
    job_id_for_listed_object,
    parse_upload_key,
)
from alertfusion.observability import count, logger
from alertfusion.pipeline.context import PipelineContext, get_context
from alertfusion.pipeline.starter import record_object
from alertfusion.tasks import AudioStageTask, ReclassifyTask, encode_task

#: the pipeline's own outputs are never recordings
RESERVED_PREFIXES = (TRANSCRIPT_PREFIX, RESULT_PREFIX, BACKFILL_PREFIX)
#: how long past the pipeline's hard timeout a batch waits for a job before giving up on it
#: (the sweeper fails a job at the hard timeout; this covers its schedule)
GIVE_UP_MARGIN = timedelta(minutes=10)
#: a job whose Transcribe job was started (and billed), whatever became of it
_TRANSCRIBED = ("STARTED", "COMPLETED", "FAILED")


class ListedObject(BaseModel):
    """One item of the map's ItemSelector."""

    model_config = ConfigDict(extra="ignore")

    key: str
    etag: str | None = None
    size: int = 0
    index: int = 0


class BatchInput(BaseModel):
    """The ItemBatcher's BatchInput."""

    model_config = ConfigDict(extra="ignore")

    backfill_id: str = Field(..., min_length=1)
    bundle_version: str | None = None
    poll_seconds: int = 20
    start_rate_per_second: float = 0.0
    window: int = 0


class Admitted(BaseModel):
    """What the admit step decided for one object (carried to the checks)."""

    key: str
    index: int
    action: AdmitAction
    job_id: str | None = None
    reason: str | None = None
    admitted_at: str


def batch_key(backfill_id: str, first_index: int) -> str:
    return f"{BACKFILL_PREFIX}{backfill_id}/batches/{first_index:09d}.json"


def summary_key(backfill_id: str) -> str:
    return f"{BACKFILL_PREFIX}{backfill_id}/summary.json"


def _extension(key: str) -> str:
    filename = key.rsplit("/", 1)[-1]
    stem, dot, ext = filename.rpartition(".")
    return ext.lower() if dot and stem else ""


def _names_its_job(key: str) -> bool:
    """Whether the key is ``uploads/{job_id}.{ext}`` (else the job id derives from the ETag)."""
    ref = parse_upload_key(key)
    return ref is not None and ref.named_job_id is not None


def _listed_job_id(item: ListedObject) -> str | None:
    """The object's job id; None for folders and the pipeline's own outputs."""
    if item.key.endswith("/") or item.key.startswith(RESERVED_PREFIXES):
        return None
    return job_id_for_listed_object(item.key, item.etag)


def _admit_one(
    ctx: PipelineContext,
    item: ListedObject,
    batch: BatchInput,
    now: datetime,
    job: Job | None,
) -> tuple[Admitted, AudioStageTask | ReclassifyTask | None]:
    """`job`: the object's job as the batch read found it (None: none yet)."""
    stamp = utc_iso(now)
    job_id = _listed_job_id(item)
    if job_id is None:
        return Admitted(key=item.key, index=item.index, action="skipped", admitted_at=stamp), None

    def admitted(action: AdmitAction, reason: str | None = None) -> Admitted:
        return Admitted(
            key=item.key,
            index=item.index,
            action=action,
            job_id=job_id,
            reason=reason,
            admitted_at=stamp,
        )

    if job is not None and job.backfill_id != batch.backfill_id:
        return _existing(job, batch, admitted)
    if job is not None and job.status is JobStatus.FAILED:
        return admitted("rejected", job.failure_reason), None
    if job is not None and (job.status is not JobStatus.RECEIVED or job.preliminary is not None):
        # this backfill made it in an earlier attempt of this step, and it went on since
        return admitted("new"), None
    # new, or made by an earlier attempt of this step whose task was never sent
    outcome, recorded = record_object(
        ctx,
        item.key,
        job_id,
        _extension(item.key),
        version_id=None,
        uploaded_at=None,
        backfill_id=batch.backfill_id,
        etag=item.etag.strip('"') if item.etag else None,
        named=_names_its_job(item.key),
    )
    if recorded is not None:
        count("BackfillJobs", action="new")
        return admitted("new"), AudioStageTask(job_id=job_id, origin="backfill")
    if outcome.action == "rejected":
        count("BackfillJobs", action="rejected")
        return admitted("rejected", outcome.reason.value if outcome.reason else None), None
    if outcome.action == "superseded":
        # replaced since the listing: the object in place is another one (with its own event)
        return admitted("skipped", outcome.detail), None
    if outcome.action == "replaced":
        return admitted("conflict", "the job holds another object of this key"), None
    current = ctx.store.get(job_id)
    if current is None or current.object_key not in (None, item.key):
        return admitted("conflict", "another object holds this job id"), None
    return _existing(current, batch, admitted)


def _existing(job: Job, batch: BatchInput, admitted: Any) -> tuple[Admitted, ReclassifyTask | None]:
    """A job the pipeline (or an earlier backfill) made: no new job, no Transcribe job; a
    DONE one without the requested version's verdict is classified again."""
    version = batch.bundle_version
    if version and job.status is JobStatus.DONE and version not in job.verdicts:
        count("BackfillJobs", action="reclassify")
        task = ReclassifyTask(job_id=job.job_id, bundle_version=version, origin="backfill")
        return admitted("reclassify"), task
    count("BackfillJobs", action="existing")
    return admitted("existing"), None


def admit(event: dict[str, Any], *, ctx: PipelineContext | None = None) -> dict[str, Any]:
    """The ``Admit`` step: the batch's objects → jobs, and the tasks to queue. Transient
    trouble raises TransientError (the state machine retries the step; what this attempt
    did is found again by the next)."""
    ctx = ctx or get_context()
    batch_event = event.get("batch") or {}
    try:
        batch = BatchInput.model_validate(batch_event.get("BatchInput") or {})
        items = [ListedObject.model_validate(i) for i in batch_event.get("Items") or []]
    except ValueError as exc:
        raise InputError(f"not a backfill batch: {exc}", code=ReasonCode.INVALID_INPUT) from exc
    now = now_utc()
    admitted: list[dict[str, Any]] = []
    tasks: list[dict[str, Any]] = []
    with logger.append_context_keys(backfill_id=batch.backfill_id, stage="backfill-admit"):
        # one read for the whole batch: most objects of a re-run have their job already
        jobs = ctx.store.get_many([j for j in map(_listed_job_id, items) if j is not None])
        for item in items:
            job_id = _listed_job_id(item)
            decision, task = _admit_one(ctx, item, batch, now, jobs.get(job_id or ""))
            admitted.append(decision.model_dump(mode="json"))
            if task is not None:
                delay = start_delay_seconds(item.index, batch.start_rate_per_second, batch.window)
                tasks.append({"body": encode_task(task), "delay_seconds": delay})
        logger.info("batch admitted", extra={"objects": len(items), "tasks": len(tasks)})
    return {"admitted": admitted, "tasks": tasks}


def _verdict_for(job: Job, version: str | None) -> tuple[Verdict | None, Verdict | None]:
    """(the verdict this backfill reports, the baseline from another version)."""
    verdicts = job.verdicts
    if version is None:
        return job.final, None
    target = verdicts.get(version)
    others = [v for name, v in verdicts.items() if name != version]
    baseline: Verdict | None
    if job.final is not None and job.final.bundle_version != version:
        baseline = job.final
    else:
        baseline = max(others, key=lambda v: v.decided_at, default=None)
    return target, baseline


def _item_state(
    job: Job | None, item: Admitted, version: str | None, give_up: timedelta, now: datetime
) -> ItemState | None:
    """The object's state once final, None while its batch should keep waiting."""
    if item.action in ("skipped", "conflict") or job is None or job.is_deleted:
        return "SKIPPED"  # a deleted job (its owner's choice) gets no verdict
    if job.status is JobStatus.FAILED:
        return "FAILED"
    if job.status is JobStatus.DONE:
        if item.action == "reclassify" and version and version not in job.verdicts:
            pass  # the classifier has not recorded this version's verdict yet
        else:
            return "DONE"
    admitted_at = datetime.fromisoformat(item.admitted_at)
    return "TIMEOUT" if now - admitted_at > give_up else None


def check(event: dict[str, Any], *, ctx: PipelineContext | None = None) -> dict[str, Any]:
    """The ``CheckJobs`` step: are the batch's jobs final? Once every one is, the batch's
    results go to ``backfills/{id}/batches/`` and ``done`` is true."""
    ctx = ctx or get_context()
    batch = BatchInput.model_validate(event.get("batch_input") or {})
    items = [Admitted.model_validate(i) for i in event.get("admitted") or []]
    now = now_utc()
    give_up = timedelta(seconds=ctx.settings.hard_timeout_seconds) + GIVE_UP_MARGIN
    version = batch.bundle_version
    results: list[ItemResult] = []
    pending = 0
    jobs = ctx.store.get_many([i.job_id for i in items if i.job_id])
    for item in items:
        job = jobs.get(item.job_id) if item.job_id else None
        state = _item_state(job, item, version, give_up, now)
        if state is None:
            pending += 1
            continue
        results.append(_result(item, job, state, version))
    if pending:
        return {"done": False, "pending": pending, "counts": {}}
    first = min((i.index for i in items), default=0)
    started = min((datetime.fromisoformat(i.admitted_at) for i in items), default=now)
    checks = 1 + math.ceil((now - started).total_seconds() / max(1, batch.poll_seconds))
    document = {
        "backfill_id": batch.backfill_id,
        "first_index": first,
        "checks": checks,
        "items": [r.model_dump(mode="json") for r in results],
    }
    _put_json(ctx, batch_key(batch.backfill_id, first), document)
    counts: dict[str, int] = {}
    for r in results:
        counts[r.state] = counts.get(r.state, 0) + 1
    return {"done": True, "pending": 0, "counts": counts}


def _result(item: Admitted, job: Job | None, state: ItemState, version: str | None) -> ItemResult:
    if job is None:
        return ItemResult(
            key=item.key,
            index=item.index,
            action=item.action,
            state=state,
            job_id=item.job_id,
            reason=item.reason,
        )
    target, baseline = _verdict_for(job, version)
    reason = item.reason
    if state == "FAILED":
        reason = job.failure_reason.value if job.failure_reason else reason
    elif state == "TIMEOUT":
        reason = ReasonCode.TIMEOUT.value
    transcribed = item.action == "new" and job.transcribe_status in (
        "STARTED",
        "COMPLETED",
        "FAILED",
    )
    duration = job.probed_duration_s
    if duration is None and job.final is not None:
        duration = job.final.duration_s
    return ItemResult(
        key=item.key,
        index=item.index,
        action=item.action,
        state=state,
        job_id=job.job_id,
        reason=reason,
        label=target.label if target is not None else None,
        bundle_version=target.bundle_version if target is not None else None,
        is_emergency=target.is_emergency if target is not None else None,
        baseline_label=baseline.label if baseline is not None else None,
        baseline_version=baseline.bundle_version if baseline is not None else None,
        transcribed=transcribed,
        duration_s=duration,
    )


def _put_json(ctx: PipelineContext, key: str, document: dict[str, Any]) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        ctx.s3.put_object(
            Bucket=ctx.settings.audio_bucket,
            Key=key,
            Body=json.dumps(document, ensure_ascii=False).encode("utf-8"),
            ContentType="application/json",
        )
    except (ClientError, BotoCoreError) as exc:
        raise TransientError(f"PutObject {key}: {type(exc).__name__}") from exc


def read_batches(s3: Any, bucket: str, backfill_id: str) -> tuple[list[ItemResult], int, int]:
    """(every item of the batches written so far, the batches, their checks)."""
    from botocore.exceptions import BotoCoreError, ClientError

    prefix = f"{BACKFILL_PREFIX}{backfill_id}/batches/"
    items: list[ItemResult] = []
    batches = checks = 0
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    try:
        while True:
            page = s3.list_objects_v2(**kwargs)
            for entry in page.get("Contents", []):
                body = s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"]
                document = json.loads(body.read())
                batches += 1
                checks += int(document.get("checks", 1))
                items += [ItemResult.model_validate(i) for i in document.get("items", [])]
            if not page.get("IsTruncated"):
                break
            kwargs["ContinuationToken"] = page["NextContinuationToken"]
    except (ClientError, BotoCoreError) as exc:
        raise TransientError(f"reading {prefix}: {error_code(exc) or exc}") from exc
    items.sort(key=lambda i: i.index)
    return items, batches, checks


def summarize(event: dict[str, Any], *, ctx: PipelineContext | None = None) -> dict[str, Any]:
    """The ``Summarize`` step: every batch's results → ``backfills/{id}/summary.json``."""
    ctx = ctx or get_context()
    backfill_id = str(event.get("backfill_id") or "")
    if not backfill_id:
        raise InputError("summarize needs backfill_id", code=ReasonCode.INVALID_INPUT)
    version = event.get("bundle_version")
    items, batches, checks = read_batches(ctx.s3, ctx.settings.audio_bucket, backfill_id)
    summary: BackfillSummary = summarize_items(
        items, batches=batches, checks=checks, bundle_version=version
    )
    document = {
        "backfill_id": backfill_id,
        "bucket": event.get("bucket"),
        "prefix": event.get("prefix"),
        "bundle_version": version,
        "map_run": event.get("map_run"),
        "finished_at": utc_iso(now_utc()),
        "summary": summary.model_dump(mode="json"),
    }
    _put_json(ctx, summary_key(backfill_id), document)
    count("BackfillsSummarized")
    return document
