"""Configuration: one pydantic settings model per concern, read from the environment once.

Resource names (bucket, table, bus, queue) have no defaults: a missing one fails at cold
start with a message that names the variable. Limits and policies have documented
defaults. boto3 itself honours ``AWS_ENDPOINT_URL`` (moto locally) and ``AWS_REGION``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from alertfusion import limits
from alertfusion.errors import ConfigError
from alertfusion.keys import DEFAULT_TRANSCRIBE_JOB_PREFIX, TRANSCRIBE_JOB_PREFIX_PATTERN
from alertfusion.transcribe import DEFAULT_LANGUAGE

S = TypeVar("S", bound=BaseSettings)

#: transcribe every upload, or only those the audio gate did not call regular
TranscribePolicy = Literal["always", "gated"]
DEFAULT_TRANSCRIBE_POLICY: TranscribePolicy = "always"


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True, case_sensitive=False)


class EngineSettings(_Settings):
    """What the inference engine needs (classifier, API, CLI)."""

    #: a bundle directory or an s3:// URI (downloaded once to BUNDLE_CACHE_DIR)
    model_bundle: str = Field(..., validation_alias="MODEL_BUNDLE")
    bundle_cache_dir: str = Field("/tmp/alertfusion-bundle", validation_alias="BUNDLE_CACHE_DIR")
    #: override the manifest's gate ("binary" or "none"); unset = the manifest decides
    fusion_gate: Literal["binary", "none"] | None = Field(None, validation_alias="FUSION_GATE")
    #: ONNX Runtime intra-op threads; 0 = the engine's default (alertfusion.sessions)
    ort_threads: int = Field(0, ge=0, le=64, validation_alias="ORT_THREADS")
    min_audio_seconds: float = Field(
        limits.MIN_AUDIO_SECONDS, gt=0, validation_alias="MIN_AUDIO_SECONDS"
    )
    max_audio_seconds: float = Field(
        limits.MAX_AUDIO_SECONDS, gt=0, validation_alias="MAX_AUDIO_SECONDS"
    )
    max_text_chars: int = Field(limits.MAX_TEXT_CHARS, gt=0, validation_alias="MAX_TEXT_CHARS")
    #: a trailing window shorter than this is not scored unless it is the only one (a few
    #: STFT frames stretched to a full image must not decide a verdict; see alertfusion.engine)
    min_window_seconds: float = Field(
        limits.MIN_WINDOW_SECONDS, ge=0, validation_alias="MIN_WINDOW_SECONDS"
    )
    #: run the bundle's golden set on this CPU before the process-wide engine serves
    #: (alertfusion.selfcheck); off only to investigate a failing one
    selfcheck: bool = Field(True, validation_alias="SELFCHECK")


class PipelineSettings(_Settings):
    """What the asynchronous pipeline's functions share (starter, classifier, sweeper, API)."""

    audio_bucket: str = Field(..., min_length=3, validation_alias="AUDIO_BUCKET")
    jobs_table: str = Field(..., min_length=3, validation_alias="JOBS_TABLE")
    event_bus_name: str = Field(..., min_length=1, validation_alias="EVENT_BUS_NAME")
    #: SQS queue of classifier tasks (audio stage from the starter, re-drives from the sweeper)
    work_queue_url: str = Field(..., min_length=1, validation_alias="WORK_QUEUE_URL")
    transcribe_policy: TranscribePolicy = Field(
        DEFAULT_TRANSCRIBE_POLICY, validation_alias="TRANSCRIBE_POLICY"
    )
    #: the default bundle's recipe's transcript_source: "model" (its own speech-to-text
    #: model: the classifier transcribes and fuses in one invocation, Amazon Transcribe is
    #: never called for its jobs) or "aws_transcribe". Named bundles (MODEL_BUNDLES) say it
    #: in their manifests.
    transcript_source: Literal["aws_transcribe", "model"] = Field(
        "aws_transcribe", validation_alias="TRANSCRIPT_SOURCE"
    )
    transcribe_language: str = Field(DEFAULT_LANGUAGE, validation_alias="TRANSCRIBE_LANGUAGE")
    #: Transcribe job name = prefix + job id; the EventBridge rule matches only this prefix
    transcribe_job_prefix: str = Field(
        DEFAULT_TRANSCRIBE_JOB_PREFIX,
        pattern=TRANSCRIBE_JOB_PREFIX_PATTERN,
        validation_alias="TRANSCRIBE_JOB_PREFIX",
    )
    max_upload_bytes: int = Field(
        limits.MAX_UPLOAD_BYTES, gt=0, validation_alias="MAX_UPLOAD_BYTES"
    )
    min_audio_seconds: float = Field(
        limits.MIN_AUDIO_SECONDS, gt=0, validation_alias="MIN_AUDIO_SECONDS"
    )
    max_audio_seconds: float = Field(
        limits.MAX_AUDIO_SECONDS, gt=0, validation_alias="MAX_AUDIO_SECONDS"
    )
    job_ttl_days: int = Field(limits.JOB_TTL_DAYS, gt=0, validation_alias="JOB_TTL_DAYS")
    #: a TRANSCRIBING job older than this is checked by the sweeper
    stuck_after_seconds: int = Field(
        limits.STUCK_AFTER_SECONDS, gt=0, validation_alias="STUCK_AFTER_SECONDS"
    )
    #: a job not DONE after this ends FAILED with reason TIMEOUT
    hard_timeout_seconds: int = Field(
        limits.HARD_TIMEOUT_SECONDS, gt=0, validation_alias="HARD_TIMEOUT_SECONDS"
    )


def load_settings(cls: type[S]) -> S:
    """Build `cls` from the environment, turning validation errors into one ConfigError
    that names every missing or invalid variable."""
    try:
        return cls()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(part) for part in err["loc"]) or "?"
            problems.append(f"{loc.upper()}: {err['msg']}")
        raise ConfigError(
            f"invalid configuration for {cls.__name__}: " + "; ".join(problems)
        ) from exc


@lru_cache(maxsize=1)
def engine_settings() -> EngineSettings:
    return load_settings(EngineSettings)


@lru_cache(maxsize=1)
def pipeline_settings() -> PipelineSettings:
    return load_settings(PipelineSettings)
