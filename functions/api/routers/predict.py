"""`POST /predict` (multipart audio + text) and `POST /predict_s3` (an object of the
pipeline's bucket + text): the verdict in the same call. The original server's paths are
legacy aliases: `POST /s3predict` (= `/predict_s3`) and `POST /s3predict-label6` (the
six-class path: every model runs, the binary gate decides nothing).

Every answer carries the original server's keys (alertfusion.result.to_legacy); with a
transcript, the text model runs even when the gate alone decides, since the original
answered `text_label` and `text_feature` there too."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as StarletteUploadFile

from alertfusion.catalog import check_bundle_name
from alertfusion.errors import InputError, NotFoundError, ReasonCode
from alertfusion.keys import parse_upload_key
from alertfusion.result import ClassificationResult
from functions.api.auth import Principal
from functions.api.deps import (
    CallerDep,
    ClassifierDep,
    ClassifierProvider,
    PipelineDep,
    PipelineResources,
    SettingsDep,
    charge_quota,
    get_pipeline,
    require_caller,
)
from functions.api.errors import error_responses
from functions.api.forms import StrictFormRoute
from functions.api.inputs import (
    check_audio_bytes,
    clean_text,
    display_name,
    read_object,
    resolve_key,
)
from functions.api.models import BUNDLE_FIELD, PredictResponse, PredictS3Request
from functions.api.settings import ApiSettings

# form fields must decode as the text they claim to be (functions.api.forms)
router = APIRouter(
    tags=["predict"], dependencies=[Depends(require_caller)], route_class=StrictFormRoute
)

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_FORM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        name: {"type": "string", "description": field.description or ""}
        for name, field in PredictS3Request.model_fields.items()
    },
}


@router.post(
    "/predict",
    response_model=PredictResponse,
    summary="Classify an uploaded recording (+ optional transcript)",
    responses=error_responses(401, 413, 415, 422, 429, 500, 503),
)
async def predict(
    settings: SettingsDep,
    classifier: ClassifierDep,
    caller: CallerDep,
    audio_file: Annotated[
        UploadFile,
        File(description="the recording (WAV, FLAC, OGG, MP3, M4A/AAC, 3GP/AMR, WebM)"),
    ],
    text_input: Annotated[
        str | None, Form(description="the transcript, if any (empty = audio only)")
    ] = None,
    bundle: Annotated[str | None, Form(description=BUNDLE_FIELD)] = None,
) -> PredictResponse:
    """The original server's form (`audio_file`, `text_input`), and `bundle` to choose
    another of the bundles `GET /bundles` lists. The format is sniffed from the bytes; the
    file name only labels messages. Bodies above the limit (4 MiB by default) get 413:
    upload those with `POST /uploads`."""
    chosen = check_bundle_name(bundle)
    name = display_name(audio_file.filename)
    audio = await audio_file.read()
    check_audio_bytes(audio, name)
    text = clean_text(text_input, settings.max_text_chars)
    if caller.is_user:  # the jobs table counts users' predictions (API keys: the usage plan)
        await run_in_threadpool(charge_quota, get_pipeline(), settings, caller, "predictions")
    result = await run_in_threadpool(_classify, classifier, audio, text, name, None, chosen)
    return PredictResponse.from_result(result)


def _check_users_object(pipeline: PipelineResources, key: str, caller: Principal) -> None:
    """A signed-in user may classify only the recording of one of their own jobs: any other
    object is 404 OBJECT_NOT_FOUND, as a missing one (no oracle for other users' keys)."""
    ref = parse_upload_key(key)
    job = pipeline.store.get(ref.named_job_id) if ref and ref.named_job_id else None
    if job is None or job.is_deleted or not caller.may_see(job.owner):
        raise NotFoundError(f"no object {display_name(key)}", code=ReasonCode.OBJECT_NOT_FOUND)


def _classify(
    provider: ClassifierProvider,
    audio: bytes,
    text: str | None,
    name: str,
    gate: Literal["binary", "none"] | None = None,
    bundle: str | None = None,
) -> ClassificationResult:
    classifier = provider(bundle) if bundle is not None else provider()
    result: ClassificationResult = classifier.classify(
        audio, text=text, filename=name, gate=gate, always_text=True
    )
    return result


async def predict_s3_body(request: Request) -> PredictS3Request:
    """The body of `/predict_s3`: JSON, or a form (urlencoded or multipart)."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    raw: Any
    if content_type in _FORM_TYPES:
        form = await request.form()
        raw = {}
        for name, value in form.multi_items():
            if isinstance(value, StarletteUploadFile):
                raise InputError(f"{name}: a text field, not a file", code=ReasonCode.INVALID_INPUT)
            raw[name] = value
    elif content_type == "application/json" or content_type.endswith("+json"):
        try:
            raw = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError("the body is not valid JSON", code=ReasonCode.INVALID_INPUT) from exc
        except RecursionError:
            # json's decoder recurses per nesting level: a 2 KB body can exhaust the stack
            raise InputError(
                "the body's JSON is nested too deeply", code=ReasonCode.INVALID_INPUT
            ) from None
    else:
        raise InputError(
            "send JSON or a form (application/x-www-form-urlencoded, multipart/form-data)",
            code=ReasonCode.INVALID_INPUT,
        )
    try:
        return PredictS3Request.model_validate(raw)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from exc


_S3_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": PredictS3Request.model_json_schema()},
            **{media: {"schema": _FORM_SCHEMA} for media in _FORM_TYPES},
        },
    }
}
_S3_ERRORS = error_responses(401, 403, 404, 413, 415, 422, 429, 500, 503)


# the original server's page posts its S3 form (`s3_key`, `text_input_s3`) to /s3predict
@router.post(
    "/s3predict",
    response_model=PredictResponse,
    summary="Legacy alias of /predict_s3 (the original server's path)",
    responses=_S3_ERRORS,
    openapi_extra=_S3_BODY,
    deprecated=True,
)
@router.post(
    "/predict_s3",
    response_model=PredictResponse,
    summary="Classify a recording already in the pipeline's bucket (+ optional transcript)",
    responses=_S3_ERRORS,
    openapi_extra=_S3_BODY,
)
async def predict_s3(
    settings: SettingsDep,
    classifier: ClassifierDep,
    pipeline: PipelineDep,
    caller: CallerDep,
    body: Annotated[PredictS3Request, Depends(predict_s3_body)],
) -> PredictResponse:
    """`s3_key` (or `s3_uri`) + `text_input_s3` (or `text`). Only the pipeline's bucket,
    only keys under the allowed prefixes (`PREDICT_S3_PREFIXES`, default `uploads/`):
    another bucket or prefix is 403, a missing object 404. The object is read into
    memory (at most MAX_UPLOAD_BYTES); nothing is written to disk."""
    return await _predict_s3(settings, classifier, pipeline, caller, body, gate=None)


@router.post(
    "/s3predict-label6",
    response_model=PredictResponse,
    summary="Legacy: /predict_s3 with every model run (the six-class path, no gate)",
    responses=_S3_ERRORS,
    openapi_extra=_S3_BODY,
    deprecated=True,
)
async def s3predict_label6(
    settings: SettingsDep,
    classifier: ClassifierDep,
    pipeline: PipelineDep,
    caller: CallerDep,
    body: Annotated[PredictS3Request, Depends(predict_s3_body)],
) -> PredictResponse:
    """The original server's six-class path: as `POST /predict_s3` with the gate off, so
    the six-class audio model and the text model decide every window."""
    return await _predict_s3(settings, classifier, pipeline, caller, body, gate="none")


async def _predict_s3(
    settings: ApiSettings,
    classifier: ClassifierProvider,
    pipeline: PipelineResources,
    caller: Principal,
    body: PredictS3Request,
    *,
    gate: Literal["binary", "none"] | None,
) -> PredictResponse:
    chosen = check_bundle_name(body.bundle)
    bucket = pipeline.settings.audio_bucket
    key = resolve_key(
        s3_key=body.s3_key,
        s3_uri=body.s3_uri,
        bucket=bucket,
        prefixes=settings.predict_s3_prefixes,
    )
    if body.text_input_s3 and body.text and body.text_input_s3 != body.text:
        raise InputError(
            "text_input_s3 and text differ: give one of them", code=ReasonCode.INVALID_INPUT
        )
    text = clean_text(body.text_input_s3 or body.text, settings.max_text_chars)
    name = display_name(key)
    if caller.is_user:
        await run_in_threadpool(_check_users_object, pipeline, key, caller)
    await run_in_threadpool(charge_quota, pipeline, settings, caller, "predictions")
    audio = await run_in_threadpool(
        read_object, pipeline.s3, bucket, key, pipeline.settings.max_upload_bytes
    )
    check_audio_bytes(audio, name)
    result = await run_in_threadpool(_classify, classifier, audio, text, name, gate, chosen)
    return PredictResponse.from_result(result)
