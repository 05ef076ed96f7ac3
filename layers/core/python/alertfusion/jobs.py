"""The job store: one DynamoDB item per job; state changes are conditional writes that only
move forward.

States: ``UPLOAD_PENDING → RECEIVED → TRANSCRIBING → DONE | FAILED``; DONE and FAILED are
final. A job may skip states (a hand-dropped upload starts at RECEIVED, a job whose
Transcribe event arrives before the starter marked it TRANSCRIBING goes RECEIVED → DONE),
never go back. The preliminary and the final verdict are each written once (the write is
conditioned on the attribute's absence), so a retried or duplicated stage cannot change a
verdict that readers may already have seen.

Table (docs: infra): partition key ``job_id`` (S); TTL attribute ``expires_at`` (N, epoch
seconds); GSI ``by_status`` (partition ``status``, sort ``updated_at``, ISO-8601 UTC with
milliseconds, so string order is time order). The sweeper only needs the keys from the
index: it re-reads each job consistently before acting, so a KEYS_ONLY projection is enough.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import (
    Clamped,
    Context,
    Decimal,
    DecimalException,
    Inexact,
    Overflow,
    Rounded,
    Underflow,
)
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, PlainSerializer

from alertfusion.errors import ConfigError, JobStateError, ReasonCode, TransientError
from alertfusion.result import ClassificationResult, DecidedBy

STATUS_INDEX = "by_status"


class JobStatus(StrEnum):
    UPLOAD_PENDING = "UPLOAD_PENDING"
    RECEIVED = "RECEIVED"
    TRANSCRIBING = "TRANSCRIBING"
    DONE = "DONE"
    FAILED = "FAILED"


FINAL_STATUSES: frozenset[JobStatus] = frozenset({JobStatus.DONE, JobStatus.FAILED})
#: every allowed move (None: no record yet). Forward only; a job may skip states (a
#: hand-dropped upload starts at RECEIVED, a job whose Transcribe event overtakes the
#: starter goes RECEIVED → DONE), but nothing is DONE or TRANSCRIBING without an upload.
_ALLOWED: dict[JobStatus | None, frozenset[JobStatus]] = {
    None: frozenset({JobStatus.UPLOAD_PENDING, JobStatus.RECEIVED, JobStatus.FAILED}),
    JobStatus.UPLOAD_PENDING: frozenset({JobStatus.RECEIVED, JobStatus.FAILED}),
    JobStatus.RECEIVED: frozenset({JobStatus.TRANSCRIBING, JobStatus.DONE, JobStatus.FAILED}),
    JobStatus.TRANSCRIBING: frozenset({JobStatus.DONE, JobStatus.FAILED}),
    JobStatus.DONE: frozenset(),
    JobStatus.FAILED: frozenset(),
}


def can_transition(current: JobStatus | None, target: JobStatus) -> bool:
    """Whether a job in `current` (None: no record yet) may move to `target`."""
    return target in _ALLOWED[current]


def sources_of(target: JobStatus) -> list[JobStatus]:
    """Every existing state from which `target` is reachable (for write conditions)."""
    return [s for s in JobStatus if can_transition(s, target)]


class Stage(StrEnum):
    PRELIMINARY = "preliminary"
    FINAL = "final"


def utc_iso(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and ``Z``: fixed width, so string order = time order."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


UtcDateTime = Annotated[
    datetime, AfterValidator(_as_utc), PlainSerializer(utc_iso, return_type=str, when_used="json")
]


def now_utc() -> datetime:
    return datetime.now(UTC)


class Verdict(BaseModel):
    """A verdict as stored on the job: the summary readers need. The full result of the
    final verdict is also written to ``results/{job_id}.json``."""

    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)

    label: str
    label_ko: str
    is_emergency: bool
    decided_by: DecidedBy
    emergency_probability: float
    probabilities: dict[str, float] | None = None
    #: where the text came from, None for an audio-only verdict
    text_source: Literal["transcribe", "client"] | None = None
    #: why a final verdict is audio-only (TRANSCRIBE_FAILED, TRANSCRIPT_EMPTY, ...)
    audio_only_reason: ReasonCode | None = None
    audio_only_detail: str | None = None
    bundle_version: str
    trained: bool
    duration_s: float
    windows: int
    selected_window: int
    inference_ms: float
    decided_at: UtcDateTime

    @classmethod
    def from_result(
        cls,
        result: ClassificationResult,
        *,
        decided_at: datetime,
        text_source: Literal["transcribe", "client"] | None = None,
        audio_only_reason: ReasonCode | None = None,
        audio_only_detail: str | None = None,
    ) -> Verdict:
        return cls(
            label=result.label,
            label_ko=result.label_ko,
            is_emergency=result.is_emergency,
            decided_by=result.decided_by,
            emergency_probability=result.emergency_probability,
            probabilities=result.probabilities,
            text_source=text_source if result.text.status == "used" else None,
            audio_only_reason=audio_only_reason,
            audio_only_detail=audio_only_detail,
            bundle_version=result.model.bundle_version,
            trained=result.model.trained,
            duration_s=result.duration_s,
            windows=len(result.windows),
            selected_window=result.selected_window,
            inference_ms=result.timings.total_ms,
            decided_at=decided_at,
        )


TranscribeState = Literal["STARTED", "COMPLETED", "FAILED", "SKIPPED"]


class Job(BaseModel):
    """One job record. Unknown attributes are ignored so that newer writers do not break
    older readers."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    job_id: str
    status: JobStatus
    #: who created the record: ``POST /uploads`` (api) or an S3 event (s3)
    source: Literal["api", "s3"] = "s3"
    created_at: UtcDateTime
    updated_at: UtcDateTime
    expires_at: int
    # the upload (object key decoded, as stored in S3)
    object_key: str | None = None
    extension: str | None = None
    content_type: str | None = None
    size_bytes: int | None = None
    etag: str | None = None
    version_id: str | None = None
    container: str | None = None
    probed_duration_s: float | None = None
    #: a transcript supplied by the client at upload time (then Transcribe is skipped)
    client_transcript: str | None = None
    # Transcribe
    transcribe_job_name: str | None = None
    transcribe_status: TranscribeState | None = None
    transcribe_detail: str | None = None
    # timestamps
    uploaded_at: UtcDateTime | None = None
    received_at: UtcDateTime | None = None
    transcribing_at: UtcDateTime | None = None
    preliminary_at: UtcDateTime | None = None
    final_at: UtcDateTime | None = None
    done_at: UtcDateTime | None = None
    failed_at: UtcDateTime | None = None
    # verdicts
    preliminary: Verdict | None = None
    final: Verdict | None = None
    #: upload (S3 event time) → verdict recorded, milliseconds
    preliminary_latency_ms: float | None = None
    final_latency_ms: float | None = None
    bundle_version: str | None = None
    result_key: str | None = None
    # failure
    failure_reason: ReasonCode | None = None
    failure_detail: str | None = None
    # emergency alerts (EventBridge), one per stage
    alert_preliminary_sent_at: UtcDateTime | None = None
    alert_final_sent_at: UtcDateTime | None = None
    # sweeper bookkeeping
    sweep_count: int = 0
    last_swept_at: UtcDateTime | None = None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def verdict(self, stage: Stage) -> Verdict | None:
        return self.preliminary if stage is Stage.PRELIMINARY else self.final

    def alert_sent_at(self, stage: Stage) -> datetime | None:
        if stage is Stage.PRELIMINARY:
            return self.alert_preliminary_sent_at
        return self.alert_final_sent_at

    def started_at(self) -> datetime:
        """When the pipeline's clock for this job started (hard timeout reference)."""
        return self.received_at or self.created_at


@dataclass(frozen=True)
class UploadInfo:
    """What the starter learned about an uploaded object (from HeadObject + the probe)."""

    object_key: str
    extension: str
    size_bytes: int
    content_type: str | None
    etag: str | None
    version_id: str | None
    uploaded_at: datetime
    container: str | None = None
    probed_duration_s: float | None = None

    def attributes(self) -> dict[str, Any]:
        return {
            "object_key": self.object_key,
            "extension": self.extension,
            "size_bytes": self.size_bytes,
            "content_type": self.content_type,
            "etag": self.etag,
            "version_id": self.version_id,
            "container": self.container,
            "probed_duration_s": self.probed_duration_s,
            "uploaded_at": utc_iso(self.uploaded_at),
        }


# --- DynamoDB plumbing ---------------------------------------------------------------------

_THROTTLING = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)


def create_jobs_table(client: Any, table_name: str) -> None:
    """Create the table `JobStore` expects, as infra/constructs/jobs_table.py deploys it
    (on-demand, the ``by_status`` index, TTL on ``expires_at``): for moto in the local stack,
    the benchmarks and the tests."""
    client.create_table(
        TableName=table_name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": name, "AttributeType": "S"}
            for name in ("job_id", "status", "updated_at")
        ],
        KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": STATUS_INDEX,
                "KeySchema": [
                    {"AttributeName": "status", "KeyType": "HASH"},
                    {"AttributeName": "updated_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
    )
    client.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
    )


def call_dynamodb(client: Any, table_name: str, operation: str, **kwargs: Any) -> dict[str, Any]:
    """One DynamoDB call on the jobs table, its failures typed: throttling, server errors and
    connection errors are `TransientError` (retry), a missing table is `ConfigError`; any
    other `ClientError` (a failed condition, say) is the caller's to handle."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        result: dict[str, Any] = getattr(client, operation)(**kwargs)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in _THROTTLING:
            raise TransientError(f"DynamoDB {operation}: {code}") from exc
        if code == "ResourceNotFoundException":
            raise ConfigError(f"jobs table {table_name!r} not found") from exc
        raise
    except BotoCoreError as exc:  # connection errors, timeouts
        raise TransientError(f"DynamoDB {operation}: {type(exc).__name__}") from exc
    return result


#: DynamoDB's number range and precision (38 digits, 1E-130 to 1E+126), as boto3 checks it
_DYNAMODB_NUMBERS = Context(
    Emin=-128,
    Emax=126,
    prec=38,
    traps=[Clamped, Overflow, Inexact, Rounded, Underflow],
)


def to_attribute(value: Any) -> dict[str, Any]:
    """A plain JSON-like value as a DynamoDB AttributeValue, as boto3's TypeSerializer writes
    it (floats go through `Decimal(repr(x))`, so the stored number is the float's shortest
    repr). Written here rather than imported: `boto3.dynamodb.types` imports all of boto3 and
    s3transfer, about 15 ms of every cold start that reads a job. `None` inside a map is left
    out (an absent attribute); only the types a job record holds are accepted."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, int | float | Decimal):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("DynamoDB cannot store a non-finite number")
        try:
            number = _DYNAMODB_NUMBERS.create_decimal(
                value if isinstance(value, Decimal) else Decimal(repr(value))
            )
        except DecimalException as exc:
            raise ValueError(f"DynamoDB cannot store the number {value!r}") from exc
        if not number.is_finite():
            raise ValueError(f"DynamoDB cannot store the number {value!r}")
        return {"N": str(number)}
    if isinstance(value, dict):
        return {"M": {str(k): to_attribute(v) for k, v in value.items() if v is not None}}
    if isinstance(value, list | tuple):
        return {"L": [to_attribute(v) for v in value]}
    raise TypeError(f"a job record holds no {type(value).__name__}")


def from_attribute(attribute: dict[str, Any]) -> Any:
    """The plain value of a DynamoDB AttributeValue: numbers come back as `int` when integral,
    else `float`. Sets and binary values, which the job store never writes, are refused."""
    ((kind, value),) = attribute.items()
    if kind == "S":
        return value
    if kind == "N":
        number = Decimal(value)
        return int(number) if number == number.to_integral_value() else float(number)
    if kind == "BOOL":
        return bool(value)
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: from_attribute(v) for k, v in value.items()}
    if kind == "L":
        return [from_attribute(v) for v in value]
    raise TypeError(f"a job record holds no DynamoDB {kind!r} value")


class _Update:
    """Builds one UpdateItem call: SET clauses, if_not_exists, ADD, and a condition."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self.sets: list[str] = []
        self.adds: list[str] = []

    def name(self, attribute: str) -> str:
        alias = f"#{attribute}"
        self.names[alias] = attribute
        return alias

    def value(self, value: Any) -> str:
        alias = f":v{len(self.values)}"
        self.values[alias] = value
        return alias

    def set(self, attribute: str, value: Any, *, keep_existing: bool = False) -> None:
        if value is None:
            return
        if f"#{attribute}" in self.names and any(
            clause.startswith(f"#{attribute} ") for clause in self.sets
        ):
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
    """Jobs on DynamoDB (low-level client; every write conditional)."""

    def __init__(self, table_name: str, client: Any, *, ttl_days: int = 30) -> None:
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

    def _query_index(self, status: JobStatus, older_than: datetime) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": STATUS_INDEX,
            "KeyConditionExpression": "#s = :s AND #u < :u",
            "ExpressionAttributeNames": {"#s": "status", "#u": "updated_at"},
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
        now: datetime | None = None,
    ) -> Job:
        """A job created before its upload (``POST /uploads``). Raises JobStateError if the
        id exists already."""
        moment = now or now_utc()
        up = self._base(JobStatus.UPLOAD_PENDING, moment, new_record=True, source="api")
        up.set("object_key", object_key)
        up.set("content_type", content_type)
        up.set("client_transcript", client_transcript)
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
        ``POST /uploads`` recorded, or else the first object that claimed the id.
        """
        moment = now or now_utc()
        up = self._base(JobStatus.RECEIVED, moment, new_record=True)
        up.set("received_at", utc_iso(moment), keep_existing=True)
        for attribute, value in upload.attributes().items():
            up.set(attribute, value, keep_existing=attribute == "uploaded_at")
        status = up.name("status")
        pending = up.value(JobStatus.UPLOAD_PENDING.value)
        received = up.value(JobStatus.RECEIVED.value)
        condition = (
            f"attribute_not_exists(job_id) OR (({status} = {pending} OR {status} = {received})"
            f" AND {self._same_object(up, upload.object_key)})"
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
            f" AND {self._same_object(up, upload.object_key)})"
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
        """Write the preliminary verdict once. None when it exists or the job FAILED."""
        moment = now or now_utc()
        up = _Update()
        up.set("updated_at", utc_iso(moment))
        up.set("preliminary", verdict.model_dump(mode="json"))
        up.set("preliminary_at", utc_iso(verdict.decided_at))
        up.set("preliminary_latency_ms", latency_ms)
        up.set("bundle_version", verdict.bundle_version, keep_existing=True)
        failed = up.value(JobStatus.FAILED.value)
        cond = (
            f"attribute_exists(job_id) AND attribute_not_exists({up.name('preliminary')})"
            f" AND {up.name('status')} <> {failed}"
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
        up.set("result_key", result_key)
        up.set("transcribe_status", transcribe_status)
        up.set("transcribe_detail", transcribe_detail[:1000] if transcribe_detail else None)
        allowed = [up.value(s.value) for s in sources_of(JobStatus.DONE)]
        cond = (
            f"attribute_exists(job_id) AND attribute_not_exists({up.name('final')})"
            f" AND {up.name('status')} IN ({', '.join(allowed)})"
        )
        return self._update(job_id, up, cond)

    def mark_alert_sent(
        self, job_id: str, stage: Stage, *, now: datetime | None = None
    ) -> Job | None:
        up = _Update()
        attribute = f"alert_{stage.value}_sent_at"
        up.set(attribute, utc_iso(now or now_utc()))
        cond = f"attribute_exists(job_id) AND attribute_not_exists({up.name(attribute)})"
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
    def _same_object(up: _Update, object_key: str) -> str:
        name = up.name("object_key")
        return f"(attribute_not_exists({name}) OR {name} = {up.value(object_key)})"

    def _not_final(self, up: _Update, *, allow_missing: bool) -> str:
        status = up.name("status")
        done, failed = up.value(JobStatus.DONE.value), up.value(JobStatus.FAILED.value)
        not_final = f"({status} <> {done} AND {status} <> {failed})"
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
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return None
            raise
        return self._job(response["Attributes"])

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        return call_dynamodb(self._client, self.table_name, operation, **kwargs)

    def _job(self, item: dict[str, Any]) -> Job:
        plain = {k: from_attribute(v) for k, v in item.items()}
        return Job.model_validate(plain)
