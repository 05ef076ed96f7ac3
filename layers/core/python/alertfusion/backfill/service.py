"""Start, dry-run, describe and redrive backfills (the API's ``/backfills`` and the command
line's ``backfill`` call these)."""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from alertfusion.backfill.batch import (
    RESERVED_PREFIXES,
    read_batches,
    summary_key,
)
from alertfusion.backfill.plan import BackfillSettings, plan_for, transcribed_share
from alertfusion.backfill.summary import (
    CHECKS_PER_BATCH,
    BackfillSummary,
    CostEstimate,
    backfill_cost,
    summarize_items,
)
from alertfusion.errors import (
    AlertFusionError,
    AudioError,
    ConfigError,
    InputError,
    NotFoundError,
    ReasonCode,
    TransientError,
)
from alertfusion.jobs import JobStore
from alertfusion.keys import is_job_id, job_id_for_listed_object, new_job_id
from alertfusion.settings import PipelineSettings

RunStatus = Literal["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE"]
#: parallel header reads of a dry run
_PROBE_THREADS = 8


class BackfillEstimate(BaseModel):
    """What a backfill over a prefix would do, before anything starts."""

    bucket: str
    prefix: str
    objects: int = Field(..., description="objects listed under the prefix (folders excluded)")
    probed: int = Field(..., description="objects whose headers were read")
    existing_jobs: int = Field(..., description="objects the pipeline already has a job for")
    refused: int = Field(..., description="objects the starter's checks would refuse")
    audio_minutes: float = Field(..., description="total duration from the headers, minutes")
    extrapolated: bool = Field(
        False, description="true when only `probed` objects were read and the rest estimated"
    )
    transcribe_policy: Literal["always", "gated"]
    max_concurrency: int
    batch_size: int
    cost: CostEstimate


class BackfillStarted(BaseModel):
    backfill_id: str
    execution_arn: str
    bucket: str
    prefix: str
    bundle_version: str | None
    max_concurrency: int
    batch_size: int


class BatchCounts(BaseModel):
    """The map run's child workflows (one per batch) by state."""

    total: int = 0
    succeeded: int = 0
    failed: int = 0
    running: int = 0
    pending: int = 0


class BackfillStatus(BaseModel):
    backfill_id: str
    status: RunStatus
    bucket: str | None
    prefix: str | None
    bundle_version: str | None
    started_at: datetime | None
    stopped_at: datetime | None
    batches: BatchCounts | None
    error: str | None = None
    cause: str | None = None
    #: true once the run's Summarize step wrote backfills/{id}/summary.json
    final: bool
    summary: BackfillSummary


@dataclass
class BackfillService:
    """Backfills of the pipeline's bucket (clients and settings injected)."""

    pipeline: PipelineSettings
    settings: BackfillSettings
    s3: Any
    sfn: Any
    store: JobStore | None = None

    # -- locations ---------------------------------------------------------------------------

    def prefix_of(self, location: str) -> str:
        """The prefix of ``s3://bucket/prefix`` (or of a bare prefix) in the pipeline's
        bucket, if backfills may read it: FORBIDDEN_LOCATION otherwise."""
        bucket, prefix = self.pipeline.audio_bucket, location
        if location.startswith("s3://"):
            bucket, _, prefix = location[5:].partition("/")
        if not prefix or prefix.startswith("/") or ".." in prefix.split("/"):
            raise InputError(
                f"{location!r}: give s3://bucket/prefix/ with a folder",
                code=ReasonCode.INVALID_INPUT,
            )
        if bucket != self.pipeline.audio_bucket:
            raise AlertFusionError(
                f"backfills read only the pipeline's bucket ({self.pipeline.audio_bucket})",
                code=ReasonCode.FORBIDDEN_LOCATION,
            )
        if prefix.startswith(RESERVED_PREFIXES) or not prefix.startswith(
            tuple(self.settings.prefixes)
        ):
            raise AlertFusionError(
                f"backfills may read under {', '.join(self.settings.prefixes)} only",
                code=ReasonCode.FORBIDDEN_LOCATION,
            )
        return prefix

    # -- dry run -----------------------------------------------------------------------------

    def list_objects(self, prefix: str) -> list[dict[str, Any]]:
        """Every object under `prefix` (folders and the pipeline's outputs left out)."""
        out: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"Bucket": self.pipeline.audio_bucket, "Prefix": prefix}
        while True:
            page = self.s3.list_objects_v2(**kwargs)
            for entry in page.get("Contents", []):
                key = entry["Key"]
                if not key.endswith("/") and not key.startswith(RESERVED_PREFIXES):
                    out.append(entry)
            if not page.get("IsTruncated"):
                return out
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def _probe(self, entry: dict[str, Any]) -> float | None:
        """The duration its headers give (0.0 when unknown), None when refused."""
        from alertfusion.probe import S3RangeReader, probe_audio, read_object_head

        bucket, key = self.pipeline.audio_bucket, entry["Key"]
        try:
            head = read_object_head(self.s3, bucket, key)
            reader = S3RangeReader(self.s3, bucket, key, head.size, prefetched=head.head)
            probe = probe_audio(reader, max_seconds=self.pipeline.max_audio_seconds)
        except AudioError:
            return None
        duration = probe.duration_s or 0.0
        if not self.pipeline.min_audio_seconds <= duration <= self.pipeline.max_audio_seconds:
            return None if probe.duration_s is not None else 0.0
        return duration

    def estimate(
        self,
        prefix: str,
        policy: Literal["always", "gated"],
        *,
        max_probe: int | None = None,
    ) -> BackfillEstimate:
        """Objects, audio minutes from their headers, and the cost, before anything starts.
        With `max_probe`, only that many objects' headers are read and the rest is
        extrapolated from their mean (the answer says so)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            objects = self.list_objects(prefix)
            sample = objects if max_probe is None else objects[:max_probe]
            existing = 0
            fresh: list[dict[str, Any]] = []
            for entry in sample:
                job_id = job_id_for_listed_object(entry["Key"], entry.get("ETag"))
                if self.store is not None and self.store.get(job_id) is not None:
                    existing += 1
                else:
                    fresh.append(entry)
            with ThreadPoolExecutor(_PROBE_THREADS) as pool:
                durations = list(pool.map(self._probe, fresh))
        except (ClientError, BotoCoreError) as exc:
            raise TransientError(f"reading {prefix}: {type(exc).__name__}") from exc
        accepted = [d for d in durations if d is not None]
        refused = len(durations) - len(accepted)
        scale = len(objects) / len(sample) if sample else 1.0
        new_jobs = round(len(accepted) * scale)
        mean = sum(accepted) / len(accepted) if accepted else 0.0
        if self._model_transcribes():
            share, why = 0.0, "the bundle's own speech-to-text model makes the transcripts"
        else:
            share = transcribed_share(policy, self.settings.gated_alert_share)
            why = f"TRANSCRIBE_POLICY={policy}"
        transcribed = round(new_jobs * share)
        plan = plan_for(policy, self.settings)
        batches = math.ceil(len(objects) / plan.batch_size)
        assumptions = [
            f"every new object classified once; {share:.0%} of them transcribed by Amazon "
            f"Transcribe ({why})",
            "Lambda durations are the cost model's placeholders (alertfusion.backfill.summary)",
            f"{CHECKS_PER_BATCH} checks per batch",
        ]
        if scale != 1.0:
            assumptions.append(
                f"headers of {len(sample)} of {len(objects)} objects read; the rest extrapolated"
            )
        return BackfillEstimate(
            bucket=self.pipeline.audio_bucket,
            prefix=prefix,
            objects=len(objects),
            probed=len(sample),
            existing_jobs=round(existing * scale),
            refused=round(refused * scale),
            audio_minutes=round(mean * new_jobs / 60, 3),
            extrapolated=scale != 1.0,
            transcribe_policy=policy,
            max_concurrency=plan.max_concurrency,
            batch_size=plan.batch_size,
            cost=backfill_cost(
                objects=len(objects),
                new_jobs=new_jobs,
                transcribed_seconds=[mean] * transcribed,
                reclassified=0,
                batches=batches,
                checks=batches * CHECKS_PER_BATCH,
                assumptions=assumptions,
            ),
        )

    def _model_transcribes(self) -> bool:
        """Whether the default bundle makes its own transcripts (TRANSCRIPT_SOURCE=model, or
        the recipe in the manifest of the bundle this process serves): then no Transcribe
        job is started, whatever TRANSCRIBE_POLICY says."""
        from alertfusion.catalog import model_transcribes

        return self.pipeline.transcript_source == "model" or model_transcribes(None)

    # -- runs --------------------------------------------------------------------------------

    @property
    def state_machine_arn(self) -> str:
        arn = self.settings.state_machine_arn
        if not arn:
            raise ConfigError("BACKFILL_STATE_MACHINE_ARN is not set: no backfill can start")
        return arn

    def execution_arn(self, backfill_id: str) -> str:
        head, _, name = self.state_machine_arn.rpartition(":stateMachine:")
        return f"{head}:execution:{name}:{backfill_id}"

    def start(self, prefix: str, bundle_version: str | None) -> BackfillStarted:
        """Start a run over `prefix` (already checked by :meth:`prefix_of`)."""
        from botocore.exceptions import BotoCoreError, ClientError

        backfill_id = new_job_id()
        document = {
            "backfill_id": backfill_id,
            "bucket": self.pipeline.audio_bucket,
            "prefix": prefix,
            "bundle_version": bundle_version,
            "poll_seconds": self.settings.poll_seconds,
        }
        try:
            answer = self.sfn.start_execution(
                stateMachineArn=self.state_machine_arn,
                name=backfill_id,
                input=json.dumps(document),
            )
        except (ClientError, BotoCoreError) as exc:
            raise TransientError(f"StartExecution: {type(exc).__name__}") from exc
        plan = plan_for(self.pipeline.transcribe_policy, self.settings)
        return BackfillStarted(
            backfill_id=backfill_id,
            execution_arn=answer["executionArn"],
            bucket=self.pipeline.audio_bucket,
            prefix=prefix,
            bundle_version=bundle_version,
            max_concurrency=plan.max_concurrency,
            batch_size=plan.batch_size,
        )

    def describe(self, backfill_id: str) -> BackfillStatus:
        """The run's state, its batches, and the counts of the results written so far."""
        from botocore.exceptions import BotoCoreError, ClientError

        if not is_job_id(backfill_id):
            raise InputError("not a backfill id", code=ReasonCode.INVALID_INPUT)
        arn = self.execution_arn(backfill_id)
        try:
            execution = self.sfn.describe_execution(executionArn=arn)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("ExecutionDoesNotExist", "ResourceNotFound"):
                raise NotFoundError(
                    f"no backfill {backfill_id}", code=ReasonCode.BACKFILL_NOT_FOUND
                ) from exc
            raise TransientError(f"DescribeExecution: {code}") from exc
        except BotoCoreError as exc:
            raise TransientError(f"DescribeExecution: {type(exc).__name__}") from exc
        document = json.loads(execution.get("input") or "{}")
        version = document.get("bundle_version")
        final = self._final_summary(backfill_id)
        if final is None:
            items, batches, checks = read_batches(self.s3, self.pipeline.audio_bucket, backfill_id)
            summary = summarize_items(items, batches=batches, checks=checks, bundle_version=version)
        else:
            summary = final
        return BackfillStatus(
            backfill_id=backfill_id,
            status=execution["status"],
            bucket=document.get("bucket"),
            prefix=document.get("prefix"),
            bundle_version=version,
            started_at=execution.get("startDate"),
            stopped_at=execution.get("stopDate"),
            batches=self._batches(arn),
            error=execution.get("error"),
            cause=execution.get("cause"),
            final=final is not None,
            summary=summary,
        )

    def _final_summary(self, backfill_id: str) -> BackfillSummary | None:
        from botocore.exceptions import ClientError

        try:
            body = self.s3.get_object(
                Bucket=self.pipeline.audio_bucket, Key=summary_key(backfill_id)
            )["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise TransientError("reading the summary") from exc
        return BackfillSummary.model_validate(json.loads(body.read())["summary"])

    def _batches(self, execution_arn: str) -> BatchCounts | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            runs = self.sfn.list_map_runs(executionArn=execution_arn).get("mapRuns", [])
            if not runs:
                return None
            counts = self.sfn.describe_map_run(mapRunArn=runs[0]["mapRunArn"])["executionCounts"]
        except (ClientError, BotoCoreError):
            return None  # progress is a convenience: the results are what counts
        return BatchCounts(
            total=counts.get("total", 0),
            succeeded=counts.get("succeeded", 0),
            failed=counts.get("failed", 0),
            running=counts.get("running", 0),
            pending=counts.get("pending", 0),
        )

    def redrive(self, backfill_id: str) -> None:
        """Run a failed backfill's failed child workflows again (Step Functions' redrive)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.sfn.redrive_execution(executionArn=self.execution_arn(backfill_id))
        except (ClientError, BotoCoreError) as exc:
            raise TransientError(f"RedriveExecution: {exc}") from exc


def service_from_environment() -> BackfillService:
    """A service on the process's settings and cached clients."""
    from alertfusion import aws
    from alertfusion.backfill.plan import backfill_settings
    from alertfusion.settings import pipeline_settings

    pipeline = pipeline_settings()
    return BackfillService(
        pipeline=pipeline,
        settings=backfill_settings(),
        s3=aws.s3(),
        sfn=aws.stepfunctions(),
        store=JobStore(pipeline.jobs_table, aws.dynamodb(), ttl_days=pipeline.job_ttl_days),
    )
