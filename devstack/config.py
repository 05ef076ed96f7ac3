"""Names and timings of the local stack."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from alertfusion.keys import DEFAULT_TRANSCRIBE_JOB_PREFIX
from alertfusion.settings import DEFAULT_TRANSCRIBE_POLICY, TranscribePolicy
from devstack.sandbox import SandboxFunction


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
    #: the functions whose handlers run in a sandbox process of their own (devstack.sandbox)
    #: instead of taking turns in this one: beside each other, as on AWS. The classifier
    #: stays here by default (tests patch it in-process); the backfill demo sandboxes it
    sandboxed: tuple[SandboxFunction, ...] = ("backfill",)
    #: sandbox processes per sandboxed function, started as invocations overlap: the pumps
    #: invoke the classifier from two queues at once, and a backfill's children overlap
    sandbox_concurrency: int = 2
    #: extra environment for the handlers (e.g. MAX_UPLOAD_BYTES)
    env: dict[str, str] = field(default_factory=dict)
    #: who the API's end-user routes accept: the API key (as deployed by default), or users
    #: signed in to a Cognito user pool the stack creates in moto (devstack.cognito)
    auth: Literal["api_key", "cognito"] = "api_key"
    #: the backfill's sizing and pacing here (alertfusion.backfill.plan.BackfillSettings):
    #: the stand-in has no StartTranscriptionJob rate quota, and a child checks its jobs
    #: every 2 s instead of every 20 s (a dozen children checking every second would keep
    #: the backfill function's sandboxes and moto's server busy for little)
    backfill_env: dict[str, str] = field(
        default_factory=lambda: {
            "TRANSCRIBE_START_TPS_QUOTA": "1000",
            "BACKFILL_POLL_SECONDS": "2",
        }
    )
