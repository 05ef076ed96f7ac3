"""The job store: one DynamoDB item per job, every state change a conditional forward write."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, Literal

from alertfusion.aws import error_code
from alertfusion.dynamodb import call_dynamodb, from_attribute, now_utc, to_attribute, utc_iso
from alertfusion.errors import JobStateError, ReasonCode, TransientError
from alertfusion.jobs.model import (
    DELETION_STATUSES,
    FINAL_STATUSES,
    Job,
    JobStatus,
    Stage,
    TranscribeState,
    UploadInfo,
    Verdict,
    sources_of,
    version_verdict_attribute,
)
from alertfusion.jobs.table import STATUS_INDEX, STATUS_INDEX_PARTITION_KEY, STATUS_INDEX_SORT_KEY
from alertfusion.limits import JOB_TTL_DAYS

_PLAIN_NAME = re.compile(r"[A-Za-z0-9_]+")


class _Update:
    """Builds one UpdateItem call: SET clauses, if_not_exists, ADD, and a condition."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self.sets: list[str] = []
        self.adds: list[str] = []

    @staticmethod
    def alias(attribute: str) -> str:
        """The placeholder of an attribute name: ``#name``, or a digest for names that hold
        characters a placeholder may not (``verdict@<bundle version>``)."""
        if _PLAIN_NAME.fullmatch(attribute):
            return f"#{attribute}"
        return "#n" + hashlib.sha256(attribute.encode("utf-8")).hexdigest()[:16]

    def name(self, attribute: str) -> str:
        alias = self.alias(attribute)
        self.names[alias] = attribute
        return alias

    def value(self, value: Any) -> str:
        alias = f":v{len(self.values)}"
        self.values[alias] = value
        return alias

    def set(self, attribute: str, value: Any, *, keep_existing: bool = False) -> None:
        if value is None:
            return
        alias = self.alias(attribute)
        if alias in self.names and any(clause.startswith(f"{alias} ") for clause in self.sets):
            raise ValueError(f"{attribute} is set twice in one update")
        name, val = self.name(attribute), self.value(value)
        self.sets.append(
            f"{name} = if_not_exists({name}, {val})" if keep_existing else f"{name} = {val}"
        )

    def add(self, attribute: str, amount: int) -> None:
        self.adds.append(f"{self.name(attribute)} {self.value(amount)}")

    def expression(self) -> str:
        parts = []
        if self.sets:
            parts.append("SET " + ", ".join(self.sets))
        if self.adds:
            parts.append("ADD " + ", ".join(self.adds))
        return " ".join(parts)


class JobStore:
    """Jobs on DynamoDB (low-level client; every write conditional). States only move
    forward (`can_transition`). The preliminary and the final verdict are each written once
    (the write is conditioned on the attribute's absence), so a retried or duplicated stage
    cannot change a verdict that readers may already have seen."""

    def __init__(self, table_name: str, client: Any, *, ttl_days: int = JOB_TTL_DAYS) -> None:
        self.table_name = table_name
        self._client = client
        self._ttl = timedelta(days=ttl_days)

    # -- reads -------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        """The job, read consistently (a job written a moment ago is always seen)."""
        response = self._call(
            "get_item",
            TableName=self.table_name,
            Key={"job_id": {"S": job_id}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        return None if item is None else self._job(item)

    def get_many(self, job_ids: list[str]) -> dict[str, Job]:
        """The jobs that exist among `job_ids`, read consistently, 100 ids per BatchGetItem
        (what DynamoDB takes); keys DynamoDB leaves unprocessed are asked for again."""
        found: dict[str, Job] = {}
        unique = list(dict.fromkeys(job_ids))
        for start in range(0, len(unique), 100):
            keys = [{"job_id": {"S": job_id}} for job_id in unique[start : start + 100]]
            request = {self.table_name: {"Keys": keys, "ConsistentRead": True}}
            for _attempt in range(8):
                answer = call_dynamodb(
                    self._client, self.table_name, "batch_get_item", RequestItems=request
                )
                for item in answer.get("Responses", {}).get(self.table_name, []):
                    job = self._job(item)
                    found[job.job_id] = job
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:
                raise TransientError("BatchGetItem left keys unprocessed after 8 attempts")
        return found

    def stuck(self, status: JobStatus, older_than: datetime, *, limit: int = 500) -> list[str]:
        """Ids of jobs in `status` whose last write is older than `older_than` (oldest
        first, at most `limit`), from the ``by_status`` index (eventually consistent:
        re-read a job before acting on it)."""
        out: list[str] = []
        for item in self._query_index(status, older_than):
            out.append(item["job_id"]["S"])
            if len(out) >= limit:
                break
        return out

    def owned_by(self, owner: str) -> list[str]:
        """Ids of every job `owner` made (``user:<sub>`` or ``apikey:<digest>``), deleted ones
        included: a Scan of the whole table, for an operator's occasional request (deleting
        everything of one person), never on a request's path."""
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "FilterExpression": "#owner = :owner AND attribute_exists(#status)",
            "ExpressionAttributeNames": {"#owner": "owner", "#status": "status"},
            "ExpressionAttributeValues": {":owner": {"S": owner}},
            "ProjectionExpression": "job_id",
            "ConsistentRead": True,
        }
        found: list[str] = []
        while True:
            page = self._call("scan", **kwargs)
            found += [item["job_id"]["S"] for item in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return sorted(found)
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _query_index(self, status: JobStatus, older_than: datetime) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": STATUS_INDEX,
            "KeyConditionExpression": "#s = :s AND #u < :u",
            "ExpressionAttributeNames": {
                "#s": STATUS_INDEX_PARTITION_KEY.name,
                "#u": STATUS_INDEX_SORT_KEY.name,
            },
            "ExpressionAttributeValues": {
                ":s": {"S": status.value},
                ":u": {"S": utc_iso(older_than)},
            },
            "ScanIndexForward": True,
        }
        while True:
            page = self._call("query", **kwargs)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- writes ------------------------------------------------------------------------------

    def create_pending(
        self,
        job_id: str,
        *,
        object_key: str | None = None,
        content_type: str | None = None,
        client_transcript: str | None = None,
        owner: str | None = None,
        bundle: str | None = None,
        now: datetime | None = None,
    ) -> Job:
        """A job created before its upload (``POST /uploads``), belonging to `owner`, for
        the named `bundle` (None: the default). Raises JobStateError if the id exists
        already."""
        moment = now or now_utc()
        up = self._base(JobStatus.UPLOAD_PENDING, moment, new_record=True, source="api")
        up.set("owner", owner)
        up.set("object_key", object_key)
        up.set("content_type", content_type)
        up.set("client_transcript", client_transcript)
        up.set("bundle", bundle)
        job = self._update(job_id, up, "attribute_not_exists(job_id)")
        if job is None:
            raise JobStateError(f"job {job_id} exists already", code=ReasonCode.INVALID_TRANSITION)
        return job

    def receive(
        self, job_id: str, upload: UploadInfo, *, now: datetime | None = None
    ) -> Job | None:
        """Record a validated upload: none/UPLOAD_PENDING/RECEIVED → RECEIVED.

        Returns the job; idempotent for the same object (a redelivered event); None when
        the job has moved past RECEIVED or belongs to another object: the key
        ``POST /uploads`` recorded, or else the first object (key and ETag) that claimed
        the id. A job takes one recording: another object under its key never replaces it.
        """
        moment = now or now_utc()
        up = self._base(JobStatus.RECEIVED, moment, new_record=True)
        up.set("received_at", utc_iso(moment), keep_existing=True)
        for attribute, value in upload.attributes().items():
            up.set(attribute, value, keep_existing=attribute in ("uploaded_at", "backfill_id"))
        status = up.name("status")
        pending = up.value(JobStatus.UPLOAD_PENDING.value)
        received = up.value(JobStatus.RECEIVED.value)
        condition = (
            f"attribute_not_exists(job_id) OR (({status} = {pending} OR {status} = {received})"
            f" AND {self._same_object(up, upload)})"
        )
        return self._update(job_id, up, condition)

    def reject(
        self,
        job_id: str,
        reason: ReasonCode,
        detail: str,
        *,
        upload: UploadInfo | None = None,
        now: datetime | None = None,
    ) -> Job | None:
        """End a job FAILED (creating the record for a hand-dropped upload). None when the
        job is final already, or (with `upload`) belongs to another object."""
        moment = now or now_utc()
        up = self._base(JobStatus.FAILED, moment, new_record=True)
        up.set("failed_at", utc_iso(moment))
        up.set("failure_reason", reason.value)
        up.set("failure_detail", detail[:1000])
        if upload is None:
            return self._update(job_id, up, self._not_final(up, allow_missing=True))
        for attribute, value in upload.attributes().items():
            up.set(attribute, value, keep_existing=True)
        # another object named after the same job id must not fail the job
        condition = (
            f"attribute_not_exists(job_id) OR ({self._not_final(up, allow_missing=False)}"
            f" AND {self._same_object(up, upload)})"
        )
        return self._update(job_id, up, condition)

    def fail(
        self, job_id: str, reason: ReasonCode, detail: str, *, now: datetime | None = None
    ) -> Job | None:
        """An existing, not yet final job → FAILED with a reason. None when already final
        or missing."""
        moment = now or now_utc()
        up = self._base(JobStatus.FAILED, moment)
        up.set("failed_at", utc_iso(moment))
        up.set("failure_reason", reason.value)
        up.set("failure_detail", detail[:1000])
        return self._update(job_id, up, self._not_final(up, allow_missing=False))

    def mark_transcribing(
        self, job_id: str, transcribe_job_name: str, *, now: datetime | None = None
    ) -> Job | None:
        """RECEIVED → TRANSCRIBING (None when the job is elsewhere: done, failed, or marked)."""
        moment = now or now_utc()
        up = self._base(JobStatus.TRANSCRIBING, moment)
        up.set("transcribing_at", utc_iso(moment), keep_existing=True)
        up.set("transcribe_job_name", transcribe_job_name)
        up.set("transcribe_status", "STARTED")
        cond = f"#status = {up.value(JobStatus.RECEIVED.value)}"
        up.name("status")
        return self._update(job_id, up, cond)

    def note_transcribe(
        self,
        job_id: str,
        state: TranscribeState,
        *,
        job_name: str | None = None,
        detail: str | None = None,
        now: datetime | None = None,
    ) -> Job | None:
        """Record what Transcribe did (no state change); only on a job not yet final."""
        up = _Update()
        up.set("updated_at", utc_iso(now or now_utc()))
        up.set("transcribe_status", state)
        up.set("transcribe_job_name", job_name)
        up.set("transcribe_detail", detail[:1000] if detail else None)
        return self._update(job_id, up, self._not_final(up, allow_missing=False))

    def set_preliminary(
        self,
        job_id: str,
        verdict: Verdict,
        *,
        latency_ms: float | None,
        now: datetime | None = None,
    ) -> Job | None:
        """Write the preliminary verdict once. None when it exists, the job FAILED or was
        deleted."""
        moment = now or now_utc()
        up = _Update()
        up.set("updated_at", utc_iso(moment))
        up.set("preliminary", verdict.model_dump(mode="json"))
        up.set("preliminary_at", utc_iso(verdict.decided_at))
        up.set("preliminary_latency_ms", latency_ms)
        up.set("bundle_version", verdict.bundle_version, keep_existing=True)
        refused = ", ".join(
            up.value(s.value) for s in (JobStatus.FAILED, *sorted(DELETION_STATUSES))
        )
        cond = (
            f"attribute_exists(job_id) AND attribute_not_exists({up.name('preliminary')})"
            f" AND NOT ({up.name('status')} IN ({refused}))"
        )
        return self._update(job_id, up, cond)

    def finish(
        self,
        job_id: str,
        verdict: Verdict,
        *,
        latency_ms: float | None,
        result_key: str | None = None,
        transcribe_status: TranscribeState | None = None,
        transcribe_detail: str | None = None,
        now: datetime | None = None,
    ) -> Job | None:
        """Write the final verdict once and end the job DONE (from RECEIVED or TRANSCRIBING).
        None when a final verdict exists or the job is in another state."""
        moment = now or now_utc()
        up = self._base(JobStatus.DONE, moment)
        up.set("final", verdict.model_dump(mode="json"))
        up.set("final_at", utc_iso(verdict.decided_at))
        up.set("done_at", utc_iso(moment))
        up.set("final_latency_ms", latency_ms)
        up.set("bundle_version", verdict.bundle_version)
        up.set(
            version_verdict_attribute(verdict.bundle_version),
            verdict.model_dump(mode="json"),
            keep_existing=True,
        )
        up.set("result_key", result_key)
        up.set("transcribe_status", transcribe_status)
        up.set("transcribe_detail", transcribe_detail[:1000] if transcribe_detail else None)
        allowed = [up.value(s.value) for s in sources_of(JobStatus.DONE)]
        cond = (
            f"attribute_exists(job_id) AND attribute_not_exists({up.name('final')})"
            f" AND {up.name('status')} IN ({', '.join(allowed)})"
        )
        return self._update(job_id, up, cond)

    def add_version_verdict(
        self, job_id: str, verdict: Verdict, *, now: datetime | None = None
    ) -> Job | None:
        """Keep the final verdict another bundle version gave a DONE job (a backfill's
        reclassification). Written once per version, never on a job that is not DONE; the
        job's state and its own final verdict do not change. None when the version's verdict
        exists already or the job is not DONE."""
        up = _Update()
        up.set("updated_at", utc_iso(now or now_utc()))
        attribute = version_verdict_attribute(verdict.bundle_version)
        up.set(attribute, verdict.model_dump(mode="json"))
        cond = (
            f"attribute_exists(job_id) AND attribute_not_exists({up.name(attribute)})"
            f" AND {up.name('status')} = {up.value(JobStatus.DONE.value)}"
        )
        return self._update(job_id, up, cond)

    def note_replacement(
        self, job_id: str, etag: str, *, now: datetime | None = None
    ) -> Job | None:
        """Another object (ETag `etag`) landed under the key of a job that took its
        recording already: noted (the first time's moment kept), no state change. The job
        keeps its own object (its reads are pinned to its ETag). None when the job is
        missing or `etag` is its own."""
        up = _Update()
        up.set("object_replaced_at", utc_iso(now or now_utc()), keep_existing=True)
        up.set("replacement_etag", etag)
        own = up.name("etag")
        cond = f"attribute_exists(job_id) AND attribute_exists({own}) AND {own} <> {up.value(etag)}"
        return self._update(job_id, up, cond)

    def mark_alert_sent(
        self, job_id: str, stage: Stage, *, now: datetime | None = None
    ) -> Job | None:
        up = _Update()
        attribute = f"alert_{stage.value}_sent_at"
        up.set(attribute, utc_iso(now or now_utc()))
        deleted = ", ".join(up.value(s.value) for s in sorted(DELETION_STATUSES))
        cond = (
            f"attribute_exists(job_id) AND attribute_not_exists({up.name(attribute)})"
            f" AND NOT ({up.name('status')} IN ({deleted}))"
        )
        return self._update(job_id, up, cond)

    def mark_swept(
        self, job_id: str, expected: JobStatus, *, now: datetime | None = None
    ) -> Job | None:
        """Note a sweeper re-drive (moves ``updated_at``, so the next sweep waits again)."""
        moment = now or now_utc()
        up = _Update()
        up.set("updated_at", utc_iso(moment))
        up.set("last_swept_at", utc_iso(moment))
        up.add("sweep_count", 1)
        cond = f"{up.name('status')} = {up.value(expected.value)}"
        return self._update(job_id, up, cond)

    # -- deletion ------------------------------------------------------------------------------

    #: what a tombstone keeps of the job: when and for whom it existed, and what the purge
    #: needs (the upload's key, Transcribe's job name); never a verdict, transcript or detail
    TOMBSTONE_ATTRIBUTES = (
        "job_id",
        "source",
        "owner",
        "created_at",
        "expires_at",
        "object_key",
        "transcribe_job_name",
    )

    def tombstone(self, job: Job, *, now: datetime | None = None) -> Job | None:
        """Replace `job`'s record by a DELETING tombstone (one PutItem: every verdict,
        transcript and version verdict goes with the old item). Written only if the record is
        still as `job` shows it (same status and last write): None when it changed meanwhile
        (read it again and retry) or is deleted already. The tombstone keeps the job's TTL."""
        from botocore.exceptions import ClientError

        if job.is_deleted:
            return None
        moment = now or now_utc()
        kept = job.model_dump(mode="json", include=set(self.TOMBSTONE_ATTRIBUTES))
        item = {
            **{k: v for k, v in kept.items() if v is not None},
            "status": JobStatus.DELETING.value,
            "updated_at": utc_iso(moment),
            "deleted_at": utc_iso(moment),
        }
        try:
            self._call(
                "put_item",
                TableName=self.table_name,
                Item={k: to_attribute(v) for k, v in item.items()},
                ConditionExpression="#status = :status AND #updated = :updated",
                ExpressionAttributeNames={"#status": "status", "#updated": "updated_at"},
                ExpressionAttributeValues={
                    ":status": {"S": job.status.value},
                    ":updated": {"S": utc_iso(job.updated_at)},
                },
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise
        return self._job({k: to_attribute(v) for k, v in item.items()})

    def mark_purged(self, job_id: str, *, now: datetime | None = None) -> Job | None:
        """DELETING → DELETED once nothing of the job remains but the tombstone (None when
        the job is not DELETING)."""
        moment = now or now_utc()
        up = self._base(JobStatus.DELETED, moment)
        up.set("purged_at", utc_iso(moment))
        cond = f"{up.name('status')} = {up.value(JobStatus.DELETING.value)}"
        return self._update(job_id, up, cond)

    # -- helpers -------------------------------------------------------------------------------

    def _base(
        self,
        status: JobStatus,
        moment: datetime,
        *,
        new_record: bool = False,
        source: Literal["api", "s3"] = "s3",
    ) -> _Update:
        up = _Update()
        up.set("status", status.value)
        up.set("updated_at", utc_iso(moment))
        if new_record:
            up.set("created_at", utc_iso(moment), keep_existing=True)
            up.set("expires_at", int((moment + self._ttl).timestamp()), keep_existing=True)
            up.set("source", source, keep_existing=True)
        return up

    @staticmethod
    def _same_object(up: _Update, upload: UploadInfo) -> str:
        """The job has no object yet, or this one: the same key and, once the job took an
        object, the same ETag."""
        name = up.name("object_key")
        same = f"(attribute_not_exists({name}) OR {name} = {up.value(upload.object_key)})"
        if upload.etag is None:
            return same
        etag = up.name("etag")
        return f"{same} AND (attribute_not_exists({etag}) OR {etag} = {up.value(upload.etag)})"

    def _not_final(self, up: _Update, *, allow_missing: bool) -> str:
        status = up.name("status")
        final = ", ".join(up.value(s.value) for s in sorted(FINAL_STATUSES))
        not_final = f"(NOT ({status} IN ({final})))"
        if allow_missing:
            return f"(attribute_not_exists(job_id) OR {not_final})"
        return f"(attribute_exists(job_id) AND {not_final})"

    def _update(self, job_id: str, up: _Update, condition: str) -> Job | None:
        """Apply `up` if `condition` holds: the job as written, else None. (The write returns
        the new item, so callers need no second read.)"""
        from botocore.exceptions import ClientError

        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": {"job_id": {"S": job_id}},
            "UpdateExpression": up.expression(),
            "ConditionExpression": condition,
            "ExpressionAttributeNames": up.names,
            "ReturnValues": "ALL_NEW",
        }
        if up.values:
            kwargs["ExpressionAttributeValues"] = {k: to_attribute(v) for k, v in up.values.items()}
        try:
            response = self._call("update_item", **kwargs)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise
        return self._job(response["Attributes"])

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        return call_dynamodb(self._client, self.table_name, operation, **kwargs)

    def _job(self, item: dict[str, Any]) -> Job:
        plain = {k: from_attribute(v) for k, v in item.items()}
        return Job.model_validate(plain)
