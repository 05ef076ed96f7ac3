"""Names and timings of the local stack."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from alertfusion.keys import DEFAULT_TRANSCRIBE_JOB_PREFIX
from alertfusion.settings import DEFAULT_TRANSCRIBE_POLICY, TranscribePolicy


@dataclass(frozen=True)
class LocalConfig:
    """Names and timings of the local stack. Resource names are fixed: moto starts empty."""

    region: str = "ap-northeast-2"
    bucket: str = "alertfusion-local-audio"
    table: str = "alertfusion-local-jobs"
    bus: str = "alertfusion-local-emergency"
    transcribe_job_prefix: str = DEFAULT_TRANSCRIBE_JOB_PREFIX
    transcribe_policy: TranscribePolicy = DEFAULT_TRANSCRIBE_POLICY
    #: the model bundle the classifier loads (MODEL_BUNDLE); None leaves the variable alone
    bundle: str | None = None
    #: the pipeline's deadlines, shorter than in AWS so that the sweeper acts within a demo
    stuck_after_seconds: int = 30
    hard_timeout_seconds: int = 600
    #: how often the local schedule runs the sweeper (AWS: every 5 minutes)
    sweep_interval_s: float = 5.0
    #: how long a message whose invocation failed stays invisible before redelivery
    visibility_timeout_s: int = 2
    #: receives before a message moves to its dead-letter queue
    max_receive_count: int = 5
    #: work-queue records per classifier invocation (the infrastructure uses 1)
    work_batch_size: int = 1
    #: the stand-in wakes when moto accepts a StartTranscriptionJob, else looks this often
    standin_poll_s: float = 1.0
    #: extra environment for the handlers (e.g. MAX_UPLOAD_BYTES)
    env: dict[str, str] = field(default_factory=dict)
    #: who the API's end-user routes accept: the API key (as deployed by default), or users
    #: signed in to a Cognito user pool the stack creates in moto (devstack.cognito)
    auth: Literal["api_key", "cognito"] = "api_key"
    #: the backfill's sizing and pacing here (alertfusion.backfill.plan.BackfillSettings):
    #: the stand-in has no StartTranscriptionJob rate quota, and a child checks its jobs
    #: every 2 s instead of every 20 s (the local handlers run one at a time: checks of a
    #: dozen children every second would take the classifier's turns)
    backfill_env: dict[str, str] = field(
        default_factory=lambda: {
            "TRANSCRIBE_START_TPS_QUOTA": "1000",
            "BACKFILL_POLL_SECONDS": "2",
        }
    )
