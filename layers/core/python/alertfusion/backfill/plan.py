"""How wide a backfill runs: its map's sizing from Transcribe's quotas and the policy, or,
for a bundle that transcribes itself, the width the CDK app sized from the classifier's
concurrency (``BACKFILL_MAP_WIDTH``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from alertfusion.settings import load_settings

#: Amazon Transcribe's default quotas (Transcribe developer guide, "Guidelines and quotas";
#: adjustable per account and region: check Service Quotas before a large backfill)
TRANSCRIBE_CONCURRENT_JOBS_QUOTA = 250
TRANSCRIBE_START_TPS_QUOTA = 25
#: Step Functions: at most 10,000 concurrent child workflows per Distributed Map
MAP_MAX_CONCURRENCY_LIMIT = 10_000
#: SQS DelaySeconds can hold a message back at most 15 minutes
SQS_MAX_DELAY_SECONDS = 900
#: where backfills may read: uploads (re-classifying what the pipeline already has) and an
#: archive folder for recordings brought in from elsewhere
DEFAULT_BACKFILL_PREFIXES = ("uploads/", "archive/")


class BackfillSettings(BaseSettings):
    """What sizes a backfill (the CDK app reads the same fields from its context, the local
    stack from its config). Defaults leave half of each Transcribe quota to live uploads."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, case_sensitive=False)

    transcribe_concurrent_jobs_quota: int = Field(
        TRANSCRIBE_CONCURRENT_JOBS_QUOTA, gt=0, validation_alias="TRANSCRIBE_CONCURRENT_JOBS_QUOTA"
    )
    transcribe_start_tps_quota: float = Field(
        TRANSCRIBE_START_TPS_QUOTA, gt=0, validation_alias="TRANSCRIBE_START_TPS_QUOTA"
    )
    #: the share of both quotas a backfill may use (live uploads keep the rest)
    quota_share: float = Field(0.5, gt=0, le=1, validation_alias="BACKFILL_QUOTA_SHARE")
    #: objects per child workflow (one admit call, one check call per poll)
    batch_size: int = Field(10, ge=1, le=100, validation_alias="BACKFILL_BATCH_SIZE")
    #: the share of recordings the audio gate is expected to send to Transcribe under
    #: TRANSCRIBE_POLICY=gated (sizing and the estimate only; the gate decides each one)
    gated_alert_share: float = Field(0.1, gt=0, le=1, validation_alias="BACKFILL_GATED_ALERT_SHARE")
    #: child workflows (batches) that may fail before the whole run fails
    tolerated_failure_percentage: float = Field(
        5.0, ge=0, le=100, validation_alias="BACKFILL_TOLERATED_FAILURE_PERCENTAGE"
    )
    #: how long a child waits between two checks of its jobs
    poll_seconds: int = Field(20, ge=1, le=3600, validation_alias="BACKFILL_POLL_SECONDS")
    #: the prefixes of the pipeline's bucket a backfill may read (the functions' roles may
    #: read exactly these; comma-separated)
    prefixes: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_BACKFILL_PREFIXES),
        validation_alias="BACKFILL_PREFIXES",
    )
    #: the map's width when the default bundle transcribes itself (its recipe's
    #: transcript_source): no Transcribe job bounds it, and no start is paced; the CDK app
    #: sizes it so that the batches in flight keep the classifier's work queue busy
    #: (infra.config). Unset: sized from Transcribe's quotas.
    map_width: int | None = Field(
        None, ge=1, le=MAP_MAX_CONCURRENCY_LIMIT, validation_alias="BACKFILL_MAP_WIDTH"
    )
    #: the state machine (API and command line; empty where backfills are not started)
    state_machine_arn: str | None = Field(None, validation_alias="BACKFILL_STATE_MACHINE_ARN")

    @field_validator("prefixes", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("prefixes")
    @classmethod
    def _folders(cls, value: list[str]) -> list[str]:
        for prefix in value:
            if prefix.startswith("/") or ".." in prefix or not prefix.endswith("/"):
                raise ValueError(f"{prefix!r}: prefixes are relative folders ending in '/'")
        return value


@lru_cache(maxsize=1)
def backfill_settings() -> BackfillSettings:
    return load_settings(BackfillSettings)


@dataclass(frozen=True)
class BackfillPlan:
    """The numbers the state machine carries."""

    #: child workflows running at once (the map's MaxConcurrency)
    max_concurrency: int
    batch_size: int
    #: objects admitted per second while the first window of jobs starts (then completions
    #: pace new batches): SQS DelaySeconds spread the first window's tasks over time
    start_rate_per_second: float
    tolerated_failure_percentage: float
    #: Transcribe jobs a full window may run at once (≤ the quota's share)
    transcribe_jobs_in_flight: int

    @property
    def window(self) -> int:
        """Objects in flight at most: every child with a full batch."""
        return self.max_concurrency * self.batch_size


def transcribed_share(policy: Literal["always", "gated"], gated_alert_share: float) -> float:
    """The share of recordings that get a Transcribe job under `policy`."""
    return 1.0 if policy == "always" else gated_alert_share


def plan_for(
    policy: Literal["always", "gated"], settings: BackfillSettings | None = None
) -> BackfillPlan:
    """Size the map so that a backfill's Transcribe jobs stay within its share of the
    concurrent-job quota (each child holds its batch's jobs until they are final) and its
    StartTranscriptionJob calls within its share of the TPS quota. With ``gated`` only the
    expected alert share is transcribed, so proportionally more objects may be in flight.
    With ``map_width`` set (a bundle that transcribes itself) the map is that wide and its
    first window is not paced."""
    s = settings or backfill_settings()
    if s.map_width is not None:
        return BackfillPlan(
            max_concurrency=s.map_width,
            batch_size=s.batch_size,
            start_rate_per_second=0.0,
            tolerated_failure_percentage=s.tolerated_failure_percentage,
            transcribe_jobs_in_flight=0,
        )
    share = transcribed_share(policy, s.gated_alert_share)
    jobs = max(1, math.floor(s.transcribe_concurrent_jobs_quota * s.quota_share))
    objects_in_flight = jobs / share
    children = max(1, math.floor(objects_in_flight / s.batch_size))
    children = min(children, MAP_MAX_CONCURRENCY_LIMIT)
    rate = s.transcribe_start_tps_quota * s.quota_share / share
    return BackfillPlan(
        max_concurrency=children,
        batch_size=s.batch_size,
        start_rate_per_second=round(rate, 3),
        tolerated_failure_percentage=s.tolerated_failure_percentage,
        transcribe_jobs_in_flight=min(jobs, math.ceil(children * s.batch_size * share)),
    )


def start_delay_seconds(index: int, plan_rate: float, window: int) -> int:
    """The SQS delay of the audio-stage task of the `index`-th listed object: objects of the
    first window start at `plan_rate` per second; later ones wait for a finished batch
    anyway, so they go at once."""
    if index >= window or plan_rate <= 0:
        return 0
    return min(SQS_MAX_DELAY_SECONDS, math.floor(index / plan_rate))
