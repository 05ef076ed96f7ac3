"""The settings, job store and AWS clients the pipeline's steps share (one per process)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from alertfusion import aws
from alertfusion.jobs import JobStore
from alertfusion.settings import PipelineSettings, pipeline_settings


@dataclass
class PipelineContext:
    """Settings, job store and AWS clients the steps use (one per process)."""

    settings: PipelineSettings
    store: JobStore
    s3: Any
    transcribe: Any
    events: Any
    sqs: Any
    #: sleep between Transcribe retries (tests inject a no-op)
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def from_environment(cls) -> PipelineContext:
        settings = pipeline_settings()
        return cls(
            settings=settings,
            store=JobStore(settings.jobs_table, aws.dynamodb(), ttl_days=settings.job_ttl_days),
            s3=aws.s3(),
            transcribe=aws.transcribe(),
            events=aws.events(),
            sqs=aws.sqs(),
        )


_context: PipelineContext | None = None


def get_context() -> PipelineContext:
    """The process-wide context, built on first use from the environment."""
    global _context
    if _context is None:
        _context = PipelineContext.from_environment()
    return _context


def reset_context(session: Any = None) -> None:
    """Forget the cached context, settings and clients (tests; `session`: see
    alertfusion.aws.reset_clients)."""
    global _context
    _context = None
    pipeline_settings.cache_clear()
    aws.reset_clients(session)
