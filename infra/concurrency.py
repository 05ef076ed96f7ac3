"""Reserved concurrency for every function and the work queue's maximum concurrency, sized
from the account's Lambda concurrency and Transcribe's quotas, so that a burst of uploads
queues instead of taking the account or failing.

Where a burst waits: S3 events beyond the starter's reservation in Lambda's asynchronous
queue (a throttled asynchronous invocation is retried until the event's maximum age, 6 h);
work-queue tasks in SQS (the event source never takes more than its maximum concurrency,
so tasks are not throttled and do not burn receive counts); Transcribe's completion events
likewise in Lambda's asynchronous queue. The API keeps its own reservation, so a burst of
uploads never starves `/jobs` or `/predict`.

    budget       B = floor((account_concurrency - 100) x concurrency_share)
                     (Lambda keeps 100 of the account's concurrency unreserved)
    sweeper      1   (one sweep at a time)
    backfill     the backfill map's width + 1 (each child invokes it once at a time, and
                 the summary); the map is sized from Transcribe's quotas, or, when the
                 default bundle transcribes itself, so that its batches keep the work queue
                 busy (infra.config)
    starter      ceil(transcribe_start_tps_quota), at least 2: each invocation makes at most
                 one StartTranscriptionJob call, so no more calls are in flight at once than
                 the quota allows per second (the adapter backs off on LimitExceeded)
    classifier   min(transcribe_concurrent_jobs_quota, half of what is left), at least 2:
                 each recording's final verdict follows one Transcribe job, and (gated
                 policy) an audio stage may start one, so more sandboxes than Transcribe runs
                 jobs only hold concurrency other functions need. Half of what is left when
                 no bundle served needs Transcribe (a baked bundle that transcribes itself)
    work queue   80 % of the classifier's (at least 2): the rest stays free for the
                 Transcribe completions that finish jobs
    api          everything left of the budget
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: concurrency Lambda keeps unreserved in every account and region
UNRESERVED_MINIMUM = 100
#: SQS event sources take a maximum concurrency of 2 to 1000
SQS_MIN_CONCURRENCY = 2
SQS_MAX_CONCURRENCY = 1000
#: the work queue's share of the classifier's reservation
WORK_QUEUE_SHARE = 0.8
MIN_RESERVED = 2


@dataclass(frozen=True)
class ConcurrencyPlan:
    """Reserved concurrent executions per function, and the work queue's maximum."""

    starter: int
    classifier: int
    work_queue: int
    api: int
    sweeper: int
    backfill: int

    @property
    def reserved(self) -> int:
        return self.starter + self.classifier + self.api + self.sweeper + self.backfill


def plan_concurrency(
    *,
    account_concurrency: int,
    concurrency_share: float,
    transcribe_concurrent_jobs_quota: int,
    transcribe_start_tps_quota: float,
    backfill_map_width: int,
    transcribe_bounds_classifier: bool = True,
) -> ConcurrencyPlan:
    """The plan the module docstring describes; ValueError when the budget cannot give
    every function its minimum."""
    budget = math.floor((account_concurrency - UNRESERVED_MINIMUM) * concurrency_share)
    sweeper = 1
    backfill = backfill_map_width + 1
    starter = max(MIN_RESERVED, math.ceil(transcribe_start_tps_quota))
    left = budget - sweeper - backfill - starter
    if left < 2 * MIN_RESERVED:
        raise ValueError(
            f"account_concurrency={account_concurrency} with "
            f"concurrency_share={concurrency_share} leaves {budget} concurrent executions to "
            f"reserve, fewer than the functions need ({sweeper + backfill + starter + 4}: "
            f"sweeper 1, backfill {backfill}, starter {starter}, classifier and API 2 each); "
            "set account_concurrency to the account's Lambda quota (Service Quotas: "
            "'Concurrent executions'; new accounts start low: request an increase) or lower "
            "transcribe_start_tps_quota / the backfill's quota share"
        )
    classifier = left // 2
    if transcribe_bounds_classifier:
        classifier = min(transcribe_concurrent_jobs_quota, classifier)
    classifier = max(MIN_RESERVED, classifier)
    api = left - classifier
    work_queue = min(
        SQS_MAX_CONCURRENCY, max(SQS_MIN_CONCURRENCY, math.floor(classifier * WORK_QUEUE_SHARE))
    )
    return ConcurrencyPlan(
        starter=starter,
        classifier=classifier,
        work_queue=work_queue,
        api=api,
        sweeper=sweeper,
        backfill=backfill,
    )
