"""A backfill's results: one record per object, their counts, the agreement table between
bundle versions, and what the run cost (prices from alertfusion.pricing)."""

from __future__ import annotations

import math
from collections import Counter
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from alertfusion.pricing import TRANSCRIBE_MINIMUM_SECONDS, price

#: what the backfill did with an object
AdmitAction = Literal["new", "existing", "reclassify", "rejected", "skipped", "conflict"]
#: an object's state when its batch stopped waiting
ItemState = Literal["DONE", "FAILED", "TIMEOUT", "SKIPPED"]

#: billed durations the estimate assumes, the cost model's placeholders (infra.cost.Load's
#: defaults; a test keeps them equal): replace them with measured REPORT lines after a deploy
CLASSIFIER_AUDIO_MS = 400.0
CLASSIFIER_FINAL_MS = 450.0
CLASSIFIER_MEMORY_MB = 3008
#: the backfill function: a batch's admit (header probes) or check (one read per job)
BACKFILL_FUNCTION_MS = 300.0
BACKFILL_FUNCTION_MEMORY_MB = 256
#: a child's checks when the estimate knows nothing better (first check + two waits)
CHECKS_PER_BATCH = 3


class ItemResult(BaseModel):
    """One listed object, as its batch recorded it once final (or given up on)."""

    model_config = ConfigDict(extra="ignore")

    key: str
    index: int
    action: AdmitAction
    state: ItemState
    job_id: str | None = None
    reason: str | None = None
    #: the verdict this backfill reports: the requested bundle version's, else the job's final
    label: str | None = None
    bundle_version: str | None = None
    is_emergency: bool | None = None
    #: the job's verdict from another bundle version, for the agreement table
    baseline_label: str | None = None
    baseline_version: str | None = None
    #: this backfill started a Transcribe job for it
    transcribed: bool = False
    duration_s: float | None = None


class Agreement(BaseModel):
    """Old label → new label counts over the objects both versions classified."""

    target_version: str
    baseline_versions: list[str]
    compared: int
    agreed: int
    table: dict[str, dict[str, int]]

    @property
    def agreement(self) -> float | None:
        return None if self.compared == 0 else self.agreed / self.compared


class CostEstimate(BaseModel):
    """USD by service and in total (list prices of alertfusion.pricing)."""

    by_service: dict[str, float]
    total: float
    assumptions: list[str] = Field(default_factory=list)


class BackfillSummary(BaseModel):
    """The counts of a backfill's results so far (or in total, once it ended)."""

    objects: int = 0
    batches: int = 0
    actions: dict[str, int] = Field(default_factory=dict)
    states: dict[str, int] = Field(default_factory=dict)
    labels: dict[str, int] = Field(default_factory=dict)
    failures: dict[str, int] = Field(default_factory=dict)
    new_jobs: int = 0
    transcribe_jobs: int = 0
    audio_minutes: float = 0.0
    comparison: Agreement | None = None
    cost: CostEstimate


def backfill_cost(
    *,
    objects: int,
    new_jobs: int,
    transcribed_seconds: list[float],
    reclassified: int,
    batches: int,
    checks: int,
    assumptions: list[str] | None = None,
) -> CostEstimate:
    """What a backfill costs for these counts (the run's own calls; storage and the
    always-on parts of the stack are in infra.cost). `transcribed_seconds`: each
    transcribed recording's duration (Transcribe bills at least 15 s a job)."""
    transcribed = len(transcribed_seconds)
    billed_minutes = sum(max(s, TRANSCRIBE_MINIMUM_SECONDS) for s in transcribed_seconds) / 60
    gb_s = price("lambda_gb_second_x86")
    classifier_gb = CLASSIFIER_MEMORY_MB / 1024
    invocations_classifier = new_jobs + transcribed + reclassified
    classifier_seconds = (
        new_jobs * CLASSIFIER_AUDIO_MS + (transcribed + reclassified) * CLASSIFIER_FINAL_MS
    ) / 1000
    function_invocations = 2 * batches + checks + 1  # admit + check(s) + summarize
    function_seconds = function_invocations * BACKFILL_FUNCTION_MS / 1000
    tasks = new_jobs + reclassified
    # per child: Admit, QueueTasks + one per task, CheckJobs/AllFinal (+ WaitForJobs) per
    # check, BatchDone; the parent: the map, Summarize, and the start and end
    transitions = batches * 3 + tasks + 3 * checks + 4
    cost = {
        "Transcribe": billed_minutes * price("transcribe_minute"),
        "Lambda": (
            (invocations_classifier + function_invocations) * price("lambda_request")
            + classifier_seconds * classifier_gb * gb_s
            + function_seconds * BACKFILL_FUNCTION_MEMORY_MB / 1024 * gb_s
        ),
        "Step Functions": transitions * price("stepfunctions_state_transition"),
        "S3": (
            math.ceil(objects / 1000) * price("s3_put_request")  # LIST pages
            + (transcribed + new_jobs + batches + 1) * price("s3_put_request")
            + (new_jobs * 4 + transcribed * 2 + reclassified * 2) * price("s3_get_request")
        ),
        "DynamoDB": (
            new_jobs * 5 * price("dynamodb_write_unit")
            + reclassified * price("dynamodb_write_unit")
            + (objects + checks * 10 + new_jobs * 4) * price("dynamodb_read_unit")
        ),
        "SQS": (tasks + transcribed) * 3 * price("sqs_request"),
    }
    rounded = {k: round(v, 4) for k, v in cost.items()}
    return CostEstimate(
        by_service=rounded,
        total=round(math.fsum(cost.values()), 4),
        assumptions=assumptions or [],
    )


def _agreement(items: list[ItemResult], target: str | None) -> Agreement | None:
    if target is None:
        return None
    table: dict[str, Counter[str]] = {}
    baselines: set[str] = set()
    compared = agreed = 0
    for item in items:
        if item.bundle_version != target or item.baseline_label is None or item.label is None:
            continue
        compared += 1
        agreed += item.baseline_label == item.label
        table.setdefault(item.baseline_label, Counter())[item.label] += 1
        if item.baseline_version:
            baselines.add(item.baseline_version)
    return Agreement(
        target_version=target,
        baseline_versions=sorted(baselines),
        compared=compared,
        agreed=agreed,
        table={old: dict(sorted(new.items())) for old, new in sorted(table.items())},
    )


def summarize_items(
    items: list[ItemResult], *, batches: int, checks: int, bundle_version: str | None
) -> BackfillSummary:
    """The counts of `items` (every object of the finished batches)."""
    states = Counter(item.state for item in items)
    labels = Counter(item.label for item in items if item.state == "DONE" and item.label)
    failures = Counter(item.reason for item in items if item.state != "DONE" and item.reason)
    actions = Counter(item.action for item in items)
    durations = [item.duration_s or 0.0 for item in items if item.transcribed]
    new = actions.get("new", 0)
    minutes = sum(item.duration_s or 0.0 for item in items if item.action == "new") / 60
    return BackfillSummary(
        objects=len(items),
        batches=batches,
        actions=dict(sorted(actions.items())),
        states=dict(sorted(states.items())),
        labels=dict(sorted(labels.items())),
        failures=dict(sorted(failures.items())),
        new_jobs=new,
        transcribe_jobs=len(durations),
        audio_minutes=round(minutes, 3),
        comparison=_agreement(items, bundle_version),
        cost=backfill_cost(
            objects=len(items),
            new_jobs=new,
            transcribed_seconds=durations,
            reclassified=actions.get("reclassify", 0),
            batches=batches,
            checks=checks,
            assumptions=[
                "Transcribe and requests from the counts so far; Lambda durations are the "
                "cost model's placeholders (alertfusion.backfill.summary)",
            ],
        ),
    )
