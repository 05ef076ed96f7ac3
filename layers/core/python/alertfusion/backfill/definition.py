"""The backfill state machine in Amazon States Language: one definition, deployed by CDK
(infra/constructs/backfill.py) and run locally by moto's interpreter (devstack/backfill.py).

Resource names are ``${...}`` substitutions (`SUBSTITUTIONS`): CloudFormation fills them in
(``DefinitionSubstitutions``) on AWS, the local stack with its own ARNs. Everything else,
the numbers included, is the same text in both places.

Shape: a Distributed Map (`MAP_STATE`) whose item reader lists the bucket under the prefix
(S3 ``ListObjectsV2``), batches ``batch_size`` objects per child workflow (Standard), runs
at most ``max_concurrency`` children and tolerates ``tolerated_failure_percentage`` failed
ones; Step Functions writes the run's child results under ``backfills/map-runs/``
(ResultWriter). Each child:

1. ``Admit`` (the backfill function): each object becomes a job by the starter's rule (job
   id from key and ETag, validation from S3 itself, conditional writes); jobs already final
   are left alone (no new job, no Transcribe), DONE jobs without a verdict of the requested
   bundle version get a ``reclassify`` task.
2. ``QueueTasks``: the tasks go on the work queue through the SQS service integration (no
   Lambda per object), with SQS delays that spread the first window over time.
3. ``CheckJobs`` / ``WaitForJobs``: the child holds its batch until every job is final, so
   the map's concurrency bounds the Transcribe jobs a backfill runs at once.
4. ``BatchDone``: the check wrote the batch's results to ``backfills/{id}/batches/``.

Then ``Summarize`` writes ``backfills/{id}/summary.json``. Lambda steps retry transient
errors with backoff and jitter; a failed run can be redriven (only its failed children
run again, and every step they repeat is idempotent).
"""

from __future__ import annotations

import json
from typing import Any

from alertfusion.backfill.plan import BackfillPlan

#: placeholder → what it names (CloudFormation DefinitionSubstitutions, or the local stack's)
SUBSTITUTIONS = {
    "BackfillFunctionArn": "the backfill function (admit, check, summarize)",
    "WorkQueueUrl": "the classifier's work queue",
    "AudioBucket": "the pipeline's bucket (results under backfills/)",
}
MAP_STATE = "Backfill"
#: the ResultWriter's prefix: Step Functions writes each map run's child results under
#: ``{prefix}/{map run id}/`` (the run's summary names its map run)
MAP_RUN_RESULTS_PREFIX = "backfills/map-runs"
#: Lambda's own transient errors and the backfill function's TransientError
_LAMBDA_RETRY = {
    "ErrorEquals": [
        "Lambda.ServiceException",
        "Lambda.AWSLambdaException",
        "Lambda.SdkClientException",
        "Lambda.TooManyRequestsException",
        "TransientError",
    ],
    "IntervalSeconds": 2,
    "MaxAttempts": 5,
    "BackoffRate": 2.0,
    "JitterStrategy": "FULL",
}
_SQS_RETRY = {
    "ErrorEquals": ["SQS.SdkClientException", "SQS.AmazonSQSException"],
    "IntervalSeconds": 1,
    "MaxAttempts": 5,
    "BackoffRate": 2.0,
    "JitterStrategy": "FULL",
}


def _invoke(action: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {
            "FunctionName": "${BackfillFunctionArn}",
            "Payload": {"action": action, **payload},
        },
        "Retry": [dict(_LAMBDA_RETRY)],
    }


def _child_states() -> dict[str, Any]:
    admit = _invoke("admit", {"batch.$": "$"})
    admit.update(
        {
            "ResultSelector": {"admitted.$": "$.Payload.admitted", "tasks.$": "$.Payload.tasks"},
            "ResultPath": "$.admit",
            "Next": "QueueTasks",
        }
    )
    check = _invoke("check", {"batch_input.$": "$.BatchInput", "admitted.$": "$.admit.admitted"})
    check.update(
        {
            "ResultSelector": {
                "done.$": "$.Payload.done",
                "pending.$": "$.Payload.pending",
                "counts.$": "$.Payload.counts",
            },
            "ResultPath": "$.check",
            "Next": "AllFinal",
        }
    )
    return {
        "Admit": admit,
        "QueueTasks": {
            "Type": "Map",
            "ItemsPath": "$.admit.tasks",
            "MaxConcurrency": 10,
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"},
                "StartAt": "SendTask",
                "States": {
                    "SendTask": {
                        "Type": "Task",
                        "Resource": "arn:aws:states:::sqs:sendMessage",
                        "Parameters": {
                            "QueueUrl": "${WorkQueueUrl}",
                            "MessageBody.$": "$.body",
                            "DelaySeconds.$": "$.delay_seconds",
                        },
                        "Retry": [dict(_SQS_RETRY)],
                        "End": True,
                    }
                },
            },
            "ResultPath": None,
            "Next": "CheckJobs",
        },
        "CheckJobs": check,
        "AllFinal": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.check.done", "BooleanEquals": True, "Next": "BatchDone"}],
            "Default": "WaitForJobs",
        },
        "WaitForJobs": {
            "Type": "Wait",
            "SecondsPath": "$.BatchInput.poll_seconds",
            "Next": "CheckJobs",
        },
        "BatchDone": {"Type": "Pass", "OutputPath": "$.check", "End": True},
    }


def backfill_definition(plan: BackfillPlan) -> dict[str, Any]:
    """The state machine, with ``${...}`` placeholders (`SUBSTITUTIONS`). Its input:
    ``backfill_id``, ``bucket``, ``prefix``, ``bundle_version`` (or null) and
    ``poll_seconds`` (alertfusion.backfill.service makes it)."""
    summarize = _invoke(
        "summarize",
        {
            "backfill_id.$": "$.backfill_id",
            "bucket.$": "$.bucket",
            "prefix.$": "$.prefix",
            "bundle_version.$": "$.bundle_version",
            "map_run.$": "$.map_run",
        },
    )
    summarize.update({"ResultSelector": {"summary.$": "$.Payload"}, "End": True})
    return {
        "Comment": "alertfusion backfill: every recording under an S3 prefix becomes a job "
        "(alertfusion.backfill.definition)",
        "StartAt": MAP_STATE,
        "States": {
            MAP_STATE: {
                "Type": "Map",
                "Label": "Backfill",
                "ItemReader": {
                    "Resource": "arn:aws:states:::s3:listObjectsV2",
                    "Parameters": {"Bucket.$": "$.bucket", "Prefix.$": "$.prefix"},
                },
                "ItemSelector": {
                    "key.$": "$$.Map.Item.Value.Key",
                    "etag.$": "$$.Map.Item.Value.Etag",
                    "size.$": "$$.Map.Item.Value.Size",
                    "index.$": "$$.Map.Item.Index",
                },
                "ItemBatcher": {
                    "MaxItemsPerBatch": plan.batch_size,
                    "BatchInput": {
                        "backfill_id.$": "$.backfill_id",
                        "bundle_version.$": "$.bundle_version",
                        "poll_seconds.$": "$.poll_seconds",
                        "start_rate_per_second": plan.start_rate_per_second,
                        "window": plan.window,
                    },
                },
                "MaxConcurrency": plan.max_concurrency,
                "ToleratedFailurePercentage": plan.tolerated_failure_percentage,
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "Admit",
                    "States": _child_states(),
                },
                "ResultWriter": {
                    "Resource": "arn:aws:states:::s3:putObject",
                    "Parameters": {"Bucket": "${AudioBucket}", "Prefix": MAP_RUN_RESULTS_PREFIX},
                },
                "ResultPath": "$.map_run",
                "Next": "Summarize",
            },
            "Summarize": summarize,
        },
    }


def definition_text(plan: BackfillPlan) -> str:
    """`backfill_definition` as the JSON text both deployments get."""
    return json.dumps(backfill_definition(plan), indent=2, sort_keys=False)


def substitute(text: str, values: dict[str, str]) -> str:
    """Fill the ``${...}`` placeholders as CloudFormation does (the local stack uses it);
    every placeholder of `SUBSTITUTIONS` must be given."""
    missing = set(SUBSTITUTIONS) - set(values)
    if missing:
        raise ValueError(f"no value for {sorted(missing)}")
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    return text
