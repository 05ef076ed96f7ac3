"""`POST /backfills` (start or dry-run a backfill of a prefix) and `GET /backfills/{id}`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from alertfusion.backfill.service import BackfillEstimate, BackfillStarted, BackfillStatus
from alertfusion.keys import JOB_ID_RE
from functions.api.deps import BackfillsDep, require_api_key
from functions.api.errors import error_responses

router = APIRouter(tags=["backfills"], dependencies=[Depends(require_api_key)])

#: a dry run through the API reads at most this many objects' headers (API Gateway stops
#: waiting at 29 s); the rest is extrapolated and the answer says so. The command line
#: reads every header.
DRY_RUN_MAX_PROBE = 200

_COST = {
    "by_service": {
        "Transcribe": 6.0,
        "Lambda": 0.09,
        "Step Functions": 0.03,
        "S3": 0.01,
        "DynamoDB": 0.0,
        "SQS": 0.0,
    },
    "total": 6.13,
    "assumptions": ["every new object classified once; 100% of them transcribed"],
}
_SUMMARY: dict[str, Any] = {
    "objects": 1000,
    "batches": 100,
    "actions": {"reclassify": 998, "rejected": 2},
    "states": {"DONE": 998, "FAILED": 2},
    "labels": {"help": 31, "regular": 950, "violence": 17},
    "failures": {"DECODE_FAILED": 2},
    "new_jobs": 0,
    "transcribe_jobs": 0,
    "audio_minutes": 0.0,
    "comparison": {
        "target_version": "prod-2026-12-01-int8",
        "baseline_versions": ["prod-2026-10-15-int8"],
        "compared": 998,
        "agreed": 981,
        "table": {"help": {"help": 29, "regular": 2}, "regular": {"regular": 935, "help": 15}},
    },
    "cost": _COST,
}


class BackfillRequest(BaseModel):
    """What to backfill: a prefix of the pipeline's bucket."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"location": "s3://alertfusion-prod-audio/archive/2024/", "dry_run": True},
                {"location": "uploads/", "bundle_version": "prod-2026-12-01-int8"},
            ]
        },
    )

    location: str = Field(
        ...,
        min_length=1,
        max_length=1024,
        description="s3://<the pipeline's bucket>/<prefix>/, or the prefix alone; only the "
        "prefixes BACKFILL_PREFIXES names (else 403 FORBIDDEN_LOCATION)",
    )
    bundle_version: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="classify the jobs that exist already again with this bundle version "
        "(the one the classifier serves) and compare the labels",
    )
    dry_run: bool = Field(
        False, description="count objects, audio minutes and cost; start nothing (200)"
    )


def _started_example() -> dict[str, Any]:
    return {
        "backfill_id": "01JEK2Q4ZB4N3P8T6W5Y7X9A1C",
        "execution_arn": "arn:aws:states:ap-northeast-2:123456789012:execution:"
        "BackfillStateMachine:01JEK2Q4ZB4N3P8T6W5Y7X9A1C",
        "bucket": "alertfusion-prod-audio",
        "prefix": "archive/2024/",
        "bundle_version": None,
        "max_concurrency": 12,
        "batch_size": 10,
    }


@router.post(
    "/backfills",
    status_code=202,
    response_model=None,
    summary="Start (or dry-run) a backfill of a prefix",
    responses={
        202: {
            "model": BackfillStarted,
            "description": "started: poll the Location (GET /backfills/{backfill_id})",
            "content": {"application/json": {"example": _started_example()}},
        },
        200: {
            "model": BackfillEstimate,
            "description": "dry run: what the backfill would read and cost; nothing started",
            "content": {
                "application/json": {
                    "example": {
                        "bucket": "alertfusion-prod-audio",
                        "prefix": "archive/2024/",
                        "objects": 1000,
                        "probed": 200,
                        "existing_jobs": 0,
                        "refused": 2,
                        "audio_minutes": 250.0,
                        "extrapolated": True,
                        "transcribe_policy": "always",
                        "max_concurrency": 12,
                        "batch_size": 10,
                        "cost": _COST,
                    }
                }
            },
        },
        **error_responses(401, 403, 422, 500, 503),
    },
)
async def create_backfill(
    body: BackfillRequest, request: Request, response: Response, backfills: BackfillsDep
) -> dict[str, Any]:
    """Every recording under the prefix becomes a job by the starter's rule (no new job and
    no Transcribe job for objects already done); Step Functions' Distributed Map runs them
    within the Transcribe quota. With `bundle_version`, jobs already DONE are classified
    again by that version and the summary compares the labels."""
    prefix = backfills.prefix_of(body.location)
    response.headers["Cache-Control"] = "no-store"
    if body.dry_run:
        policy = backfills.pipeline.transcribe_policy
        estimate = await run_in_threadpool(
            backfills.estimate, prefix, policy, max_probe=DRY_RUN_MAX_PROBE
        )
        response.status_code = 200
        return estimate.model_dump(mode="json")
    started = await run_in_threadpool(backfills.start, prefix, body.bundle_version)
    response.headers["Location"] = str(
        request.url_for("get_backfill", backfill_id=started.backfill_id)
    )
    return started.model_dump(mode="json")


@router.get(
    "/backfills/{backfill_id}",
    name="get_backfill",
    response_model=BackfillStatus,
    summary="A backfill's state, counts by state and label, and cost so far",
    responses={
        200: {
            "description": "the run and the counts of its finished batches (all of them "
            "once `final`)",
            "content": {
                "application/json": {
                    "example": {
                        "backfill_id": "01JEK2Q4ZB4N3P8T6W5Y7X9A1C",
                        "status": "SUCCEEDED",
                        "bucket": "alertfusion-prod-audio",
                        "prefix": "uploads/",
                        "bundle_version": "prod-2026-12-01-int8",
                        "started_at": "2026-12-05T09:00:00Z",
                        "stopped_at": "2026-12-05T09:41:10Z",
                        "batches": {
                            "total": 100,
                            "succeeded": 100,
                            "failed": 0,
                            "running": 0,
                            "pending": 0,
                        },
                        "error": None,
                        "cause": None,
                        "final": True,
                        "summary": _SUMMARY,
                    }
                }
            },
        },
        **error_responses(401, 404, 422, 500, 503),
    },
)
async def get_backfill(
    backfill_id: Annotated[
        str,
        Path(
            pattern=JOB_ID_RE.pattern,
            description="the id `POST /backfills` answered",
            examples=["01JEK2Q4ZB4N3P8T6W5Y7X9A1C"],
        ),
    ],
    response: Response,
    backfills: BackfillsDep,
) -> BackfillStatus:
    """`status` is Step Functions' (RUNNING, SUCCEEDED, FAILED, ...); `summary` counts the
    objects of the batches finished so far: what the backfill did with them, their states,
    labels and failure reasons, the label agreement between bundle versions, and the cost
    so far. Unknown ids are 404 BACKFILL_NOT_FOUND."""
    response.headers["Cache-Control"] = "no-store"
    status = await run_in_threadpool(backfills.describe, backfill_id)
    if status.status == "RUNNING":
        response.headers["Retry-After"] = "10"
    return status
