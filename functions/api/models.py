"""Request and response models of the HTTP API (the OpenAPI schema is built from these)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from alertfusion.catalog import BUNDLE_NAME_PATTERN
from alertfusion.errors import ReasonCode
from alertfusion.jobs import JobStatus, TranscribeState, UtcDateTime, Verdict
from alertfusion.result import ClassificationResult, to_legacy

_PROBS: dict[str, Any] = {
    "regular": 0.0412,
    "help": 0.7731,
    "robbery": 0.0529,
    "sexual": 0.0318,
    "theft": 0.0377,
    "violence": 0.0633,
}
_AUDIO_PROBS: dict[str, Any] = {
    "regular": 0.1104,
    "help": 0.4523,
    "robbery": 0.1012,
    "sexual": 0.0877,
    "theft": 0.0941,
    "violence": 0.1543,
}
_TEXT_PROBS: dict[str, Any] = {
    "regular": 0.0223,
    "help": 0.8829,
    "robbery": 0.0247,
    "sexual": 0.0198,
    "theft": 0.0231,
    "violence": 0.0272,
}
_AUDIO_LOGITS: list[Any] = [-0.41, 1.0, -0.49, -0.63, -0.56, 0.03]
_TEXT_LOGITS: list[Any] = [-1.42, 2.26, -1.32, -1.54, -1.39, -1.22]
_GATE: dict[str, Any] = {
    "label": "alert",
    "probabilities": {"regular": 0.1842, "alert": 0.8158},
    "logits": [-0.745, 0.745],
}
_WINDOW: dict[str, Any] = {
    "index": 0,
    "start_s": 0.0,
    "end_s": 4.2,
    "gate": _GATE,
    "audio_probabilities": _AUDIO_PROBS,
    "audio_logits": _AUDIO_LOGITS,
    "label": "help",
    "decided_by": "fusion",
    "probabilities": _PROBS,
    "emergency_probability": 0.9588,
}
#: one real-shaped result (a 4.2 s recording with text): the OpenAPI example
RESULT_EXAMPLE: dict[str, Any] = {
    "schema_version": 1,
    "label": "help",
    "label_ko": "도움요청",
    "is_emergency": True,
    "decided_by": "fusion",
    "emergency_probability": 0.9588,
    "probabilities": _PROBS,
    "explanation": "the binary audio model says alert (p=0.816); late fusion of the 6-class "
    "audio model and the text model says help (p=0.773)",
    "aggregation": "max_emergency_window",
    "selected_window": 0,
    "audio": {
        "gate": _GATE,
        "label": "help",
        "probabilities": _AUDIO_PROBS,
        "logits": _AUDIO_LOGITS,
    },
    "text": {
        "status": "used",
        "label": "help",
        "probabilities": _TEXT_PROBS,
        "logits": _TEXT_LOGITS,
        "n_tokens": 9,
    },
    "windows": [_WINDOW],
    "duration_s": 4.2,
    "model": {
        "bundle_version": "demo-0.1.0",
        "trained": False,
        "manifest_schema_version": 1,
        "quantization": {
            "audio_binary": "int8_static_qdq",
            "audio_multiclass": "int8_static_qdq",
            "text": "int8_dynamic",
        },
        "gate": "binary",
        "mel_transform": "zscore",
        "layout": "stacked",
    },
    "timings": {
        "decode_ms": 6.1,
        "features_ms": 4.8,
        "audio_models_ms": 61.0,
        "text_model_ms": 18.7,
        "fusion_ms": 0.1,
        "total_ms": 91.2,
    },
}


class _ApiModel(BaseModel):
    """Responses: validators and serializers are built on first use, not at import, so a
    cold process answering /healthz or /jobs builds only its route's models. (Request
    bodies are built at import: FastAPI wraps a deferred body model in a way pydantic warns
    about.)"""

    model_config = ConfigDict(defer_build=True)


class PredictResponse(ClassificationResult):
    """The engine's result, plus the original server's keys at the top level (old app
    builds read `result`, `audio_label`, ... `combined_feature`). Where the original
    answered fixed placeholder scores (text skipped by the audio gate) these are null."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    **RESULT_EXAMPLE,
                    "result": "success",
                    "audio_label": "help",
                    "audio_feature": _AUDIO_LOGITS,
                    "text_label": "help",
                    "text_feature": _TEXT_LOGITS,
                    "combined_label": "help",
                    "combined_feature": list(_PROBS.values()),
                    "combined_probabilities": list(_PROBS.values()),
                }
            ]
        },
    )

    result: Literal["success"] = Field("success", description="legacy: always 'success'")
    audio_label: str | None = Field(None, description="legacy: the audio model's label")
    audio_feature: list[float] | None = Field(None, description="legacy: audio logits")
    text_label: str | None = Field(None, description="legacy: the text model's label")
    text_feature: list[float] | None = Field(None, description="legacy: text logits")
    combined_label: str = Field(..., description="legacy: the verdict's label")
    combined_feature: list[float] | None = Field(
        None, description="legacy: fused probabilities (class order of `probabilities`)"
    )
    combined_probabilities: list[float] | None = Field(
        None,
        description="legacy: the same fused probabilities (the original's name in its gate "
        "branch); null when the gate alone decided, where the original answered placeholders",
    )

    @classmethod
    def from_result(cls, result: ClassificationResult) -> PredictResponse:
        return cls.model_validate({**result.model_dump(), **to_legacy(result)})


#: the `bundle` field of /predict, /predict_s3 and /uploads
BUNDLE_FIELD = (
    "the model bundle to classify with, by name (GET /bundles lists them); unset or "
    "'default': the default bundle; another name: 422 UNKNOWN_BUNDLE"
)
BundleName = Annotated[
    str | None, Field(max_length=64, pattern=BUNDLE_NAME_PATTERN, description=BUNDLE_FIELD)
]


class PredictS3Request(BaseModel):
    """`/predict_s3`: an object of the pipeline's bucket (`s3_key` or `s3_uri`) + text."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {"s3_key": "uploads/01JD3W7Q5V2ZK8F9X4M6N0P1RS.wav", "text_input_s3": "도와주세요"},
                {"s3_uri": "s3://alertfusion-prod-audio/uploads/call-0142.m4a"},
            ]
        },
    )

    s3_key: str | None = Field(None, description="a key of the pipeline's bucket")
    s3_uri: str | None = Field(None, description="s3://<the pipeline's bucket>/<key>")
    text_input_s3: str | None = Field(None, description="the transcript (original name)")
    text: str | None = Field(None, description="the transcript (alias of text_input_s3)")
    bundle: BundleName = None


class UploadRequest(BaseModel):
    """`POST /uploads`: what will be uploaded. The extension of the object key comes from
    `content_type`, else from `filename` (only its extension is used)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"content_type": "audio/mp4"},
                {"filename": "call.wav", "transcript": "도와주세요 여기 사람이 쓰러졌어요"},
            ]
        },
    )

    content_type: str | None = Field(
        None, max_length=200, description="the recording's MIME type, e.g. audio/mp4"
    )
    filename: str | None = Field(None, max_length=255, description="only the extension counts")
    transcript: str | None = Field(
        None,
        description="the transcript, when the app has one: Transcribe is then skipped and "
        "the final verdict fuses this text",
    )
    bundle: BundleName = None


class PresignedPost(_ApiModel):
    """Send a multipart/form-data POST to `url` with every field of `fields` (in any
    order) and the recording as the last field, named `file`."""

    url: str
    fields: dict[str, str]
    key: str = Field(..., description="the object key the upload will have")
    content_type: str = Field(..., description="the Content-Type field the policy expects")
    max_bytes: int = Field(..., description="content-length-range upper bound")
    expires_at: UtcDateTime


class UploadResponse(_ApiModel):
    """The job and the presigned POST for its one recording; `upload` is null once the job
    has its recording (a replayed Idempotency-Key after the upload): a job takes one."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "job_id": "01JD3W7Q5V2ZK8F9X4M6N0P1RS",
                    "status": "UPLOAD_PENDING",
                    "upload": {
                        "url": "https://alertfusion-prod-audio.s3.amazonaws.com/",
                        "fields": {
                            "Content-Type": "audio/mp4",
                            "key": "uploads/01JD3W7Q5V2ZK8F9X4M6N0P1RS.m4a",
                            "x-amz-algorithm": "AWS4-HMAC-SHA256",
                            "x-amz-credential": "ASIA.../20261121/ap-northeast-2/s3/aws4_request",
                            "x-amz-date": "20261121T091403Z",
                            "x-amz-security-token": "IQoJb3JpZ2luX2Vj...",
                            "policy": "eyJleHBpcmF0aW9uIjogIjIwMjYtMTEtMjFUMDk6MjQ6MDNaIi...",
                            "x-amz-signature": "4a2f...",
                        },
                        "key": "uploads/01JD3W7Q5V2ZK8F9X4M6N0P1RS.m4a",
                        "content_type": "audio/mp4",
                        "max_bytes": 52428800,
                        "expires_at": "2026-11-21T09:24:03.000Z",
                    },
                    "poll_url": "https://abc123.execute-api.ap-northeast-2.amazonaws.com"
                    "/prod/jobs/01JD3W7Q5V2ZK8F9X4M6N0P1RS",
                    "transcript_supplied": False,
                    "replayed": False,
                }
            ]
        }
    )

    job_id: str
    status: JobStatus
    upload: PresignedPost | None = Field(
        ..., description="null once the job has its recording: no second POST for its key"
    )
    poll_url: str = Field(
        ...,
        description="GET it until `status` is DONE or FAILED (an absolute URL behind API "
        "Gateway or with PUBLIC_BASE_URL set; else a path on this server)",
    )
    transcript_supplied: bool
    replayed: bool = Field(
        ..., description="true when an earlier request with the same Idempotency-Key made it"
    )


class JobObject(_ApiModel):
    """The recording the job took (its verdicts describe exactly these bytes)."""

    etag: str | None = Field(None, description="S3 ETag of the recording")
    replaced_at: UtcDateTime | None = Field(
        None,
        description="when another object landed under the job's key: refused, and the job "
        "keeps its own recording (see OBJECT_REPLACED)",
    )


class JobFailure(_ApiModel):
    reason: ReasonCode
    detail: str | None = None


class JobTranscribe(_ApiModel):
    status: TranscribeState | None = None
    detail: str | None = None


class JobTimings(_ApiModel):
    """When each step happened (UTC) and how long the verdicts took after the upload."""

    created_at: UtcDateTime
    updated_at: UtcDateTime
    uploaded_at: UtcDateTime | None = None
    received_at: UtcDateTime | None = None
    transcribing_at: UtcDateTime | None = None
    preliminary_at: UtcDateTime | None = None
    final_at: UtcDateTime | None = None
    done_at: UtcDateTime | None = None
    failed_at: UtcDateTime | None = None
    #: when the owner deleted the job (DELETE /jobs/{id}) and when nothing of it remained
    deleted_at: UtcDateTime | None = None
    purged_at: UtcDateTime | None = None
    preliminary_latency_ms: float | None = None
    final_latency_ms: float | None = None


class JobView(_ApiModel):
    """A job as clients see it. `final` is set once the job is DONE; `preliminary` (the
    audio-only verdict) usually comes within seconds of the upload."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "job_id": "01JD3W7Q5V2ZK8F9X4M6N0P1RS",
                    "status": "TRANSCRIBING",
                    "is_final": False,
                    "source": "api",
                    "object_key": "uploads/01JD3W7Q5V2ZK8F9X4M6N0P1RS.m4a",
                    "duration_s": 4.2,
                    "preliminary": {
                        "label": "help",
                        "label_ko": "도움요청",
                        "is_emergency": True,
                        "decided_by": "audio_only",
                        "emergency_probability": 0.8896,
                        "probabilities": _AUDIO_PROBS,
                        "bundle_version": "demo-0.1.0",
                        "trained": False,
                        "duration_s": 4.2,
                        "windows": 1,
                        "selected_window": 0,
                        "inference_ms": 70.4,
                        "decided_at": "2026-11-21T09:14:05.120Z",
                    },
                    "final": None,
                    "reason_codes": [],
                    "failure": None,
                    "transcribe": {"status": "STARTED"},
                    "timings": {
                        "created_at": "2026-11-21T09:14:03.000Z",
                        "updated_at": "2026-11-21T09:14:05.120Z",
                        "uploaded_at": "2026-11-21T09:14:04.002Z",
                        "received_at": "2026-11-21T09:14:04.410Z",
                        "transcribing_at": "2026-11-21T09:14:04.730Z",
                        "preliminary_at": "2026-11-21T09:14:05.120Z",
                        "preliminary_latency_ms": 1118.0,
                    },
                    "retry_after_seconds": 10,
                }
            ]
        }
    )

    job_id: str
    status: JobStatus
    is_final: bool
    source: Literal["api", "s3"]
    object_key: str | None = None
    #: the bundle named at POST /uploads (GET /bundles); null: the default
    bundle: str | None = None
    object: JobObject | None = None
    duration_s: float | None = Field(None, description="probed from the file's header")
    preliminary: Verdict | None = None
    final: Verdict | None = None
    reason_codes: list[ReasonCode] = Field(
        default_factory=list,
        description="why the job failed, or why its final verdict is audio-only",
    )
    failure: JobFailure | None = None
    transcribe: JobTranscribe | None = None
    timings: JobTimings
    retry_after_seconds: int | None = Field(
        None, description="while not final: when to poll again (also the Retry-After header)"
    )


class Health(_ApiModel):
    status: Literal["ok"] = "ok"
    version: str


class SelfCheckSummary(_ApiModel):
    """The bundle's self-check on this process's CPU (alertfusion.selfcheck)."""

    #: "failed" never comes with a 200: /readyz answers 503 SELFCHECK_FAILED then
    status: Literal["passed", "fallback", "failed", "unavailable"]
    cpu: str | None = None
    #: models served by their fp32 fallback because int8 failed the check here
    fallback: list[str] = Field(default_factory=list)
    ms: float | None = None


class LabelView(_ApiModel):
    """One label of a bundle's verdict: its name (the `label` of results) and what people read."""

    name: str
    display: str


class BundleView(_ApiModel):
    """A model bundle this deployment serves, from its manifest: the labels are data (each
    recipe has its own), never a fixed list."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "infant-cry",
                    "default": False,
                    "bundle_version": "demo-infant-cry-tiny-seed0",
                    "recipe": "infant-cry",
                    "trained": False,
                    "labels": [
                        {"name": "hungry", "display": "배고픔"},
                        {"name": "other", "display": "그외"},
                    ],
                    "alert_labels": ["hungry"],
                    "aggregate": "mean",
                    "has_text_model": False,
                    "transcript_source": "aws_transcribe",
                }
            ]
        }
    )

    name: str = Field(..., description="what `bundle` takes in /predict and /uploads")
    default: bool = Field(..., description="the bundle used when a request names none")
    bundle_version: str
    recipe: str
    trained: bool
    labels: list[LabelView]
    alert_labels: list[str] = Field(..., description="a verdict with one of these is an alert")
    aggregate: str = Field(..., description="how windows combine (max_alert, mean, share, whole)")
    has_text_model: bool = Field(
        ..., description="false: Transcribe is never started, the audio verdict is final"
    )
    display_names: dict[str, str] = Field(
        default_factory=dict, description="every model's label (a gate's too) -> display name"
    )
    transcript_source: Literal["aws_transcribe", "model"] = Field(
        "aws_transcribe",
        description="model: the bundle's own speech-to-text model makes the transcript "
        "(no Amazon Transcribe job; one final verdict)",
    )


class BundleList(_ApiModel):
    bundles: list[BundleView]


class Ready(_ApiModel):
    status: Literal["ready"] = "ready"
    bundle_version: str
    trained: bool
    gate: str
    #: the bundle's recipe and its verdict labels (names and display names)
    recipe: str
    labels: list[LabelView]
    alert_labels: list[str]
    #: each model's quantization as served (``none`` for a model on its fp32 fallback)
    quantization: dict[str, str]
    selfcheck: SelfCheckSummary | None = None
