"""Narrow IAM statements the functions share (S3 prefixes, the jobs table, Transcribe).

CDK's `bucket.grant_read/put` and `table.grant_*` would add wildcard actions (`s3:GetObject*`,
`s3:Abort*`) or `table/index/*`; these name exactly the actions and resources used.
"""

from __future__ import annotations

from collections.abc import Callable

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.nag import acknowledge, acknowledge_wildcard_resource

#: What reading and advancing a job needs (conditional writes; transactions use the same).
TABLE_READ_WRITE_ACTIONS = [
    "dynamodb:GetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:ConditionCheckItem",
]

_PREFIX_REASON = (
    "Object keys are job ids created at run time; the key prefix ({prefix}) is the "
    "narrowest scope S3 can express for them."
)
_TRANSCRIBE_START_REASON = (
    "transcribe:StartTranscriptionJob supports no resource-level permissions (the Service "
    "Authorization Reference lists no resource type), so it must name '*'; the statement "
    "is pinned by conditions to this pipeline's bucket (transcribe:OutputBucketName) and "
    "to output keys under transcripts/ (transcribe:OutputKey)."
)
_TRANSCRIBE_JOB_REASON = (
    "Transcribe job names are {prefix}<job id>, created at run time; the job-name prefix "
    "is the narrowest resource pattern for transcribe:GetTranscriptionJob."
)


def allow_objects(role: iam.Role, actions: list[str], arns_by_prefix: dict[str, str]) -> None:
    """`actions` on every object under each prefix (`{"uploads/": "<arn>/uploads/*"}`)."""
    role.add_to_principal_policy(
        iam.PolicyStatement(actions=actions, resources=list(arns_by_prefix.values()))
    )
    for prefix, arn in arns_by_prefix.items():
        acknowledge_wildcard_resource(role, role, arn, _PREFIX_REASON.format(prefix=prefix))


def allow_table(
    role: iam.Role, table_arn: str, actions: list[str], *, index_arns: tuple[str, ...] = ()
) -> None:
    role.add_to_principal_policy(iam.PolicyStatement(actions=actions, resources=[table_arn]))
    if index_arns:
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["dynamodb:Query"], resources=list(index_arns))
        )


def transcription_job_arn(scope: Construct, prefix: str) -> str:
    stack = Stack.of(scope)
    return stack.format_arn(
        service="transcribe", resource="transcription-job", resource_name=f"{prefix}*"
    )


def allow_transcribe_start(
    scope: Construct, role: iam.Role, *, bucket_name: str, transcripts_prefix: str
) -> iam.Policy:
    """StartTranscriptionJob, only with output in this bucket under `transcripts_prefix`.

    A policy of its own, so that its `Resource: *` acknowledgment covers nothing else.
    Transcribe reads the media (s3:GetObject) and writes the transcript (s3:PutObject) with
    the caller's permissions: the caller's role must hold those too.
    """
    policy = iam.Policy(
        scope,
        "TranscribeStart",
        roles=[role],
        statements=[
            iam.PolicyStatement(
                actions=["transcribe:StartTranscriptionJob"],
                resources=["*"],
                conditions={
                    "StringEquals": {"transcribe:OutputBucketName": bucket_name},
                    "StringLike": {"transcribe:OutputKey": f"{transcripts_prefix}*"},
                },
            )
        ],
    )
    acknowledge(policy, "AwsSolutions-IAM5[Resource::*]", _TRANSCRIBE_START_REASON)
    return policy


def allow_transcribe_get(
    scope: Construct, role: iam.Role, *, job_prefix: str, delete: bool = False
) -> None:
    """GetTranscriptionJob on this deployment's jobs; with `delete`, DeleteTranscriptionJob
    too (deleting a job deletes its Transcribe job: alertfusion.pipeline.deletion)."""
    arn = transcription_job_arn(scope, job_prefix)
    actions = ["transcribe:GetTranscriptionJob"]
    if delete:
        actions.append("transcribe:DeleteTranscriptionJob")
    role.add_to_principal_policy(iam.PolicyStatement(actions=actions, resources=[arn]))
    acknowledge_wildcard_resource(role, role, arn, _TRANSCRIBE_JOB_REASON.format(prefix=job_prefix))


def allow_job_deletion(
    scope: Construct,
    role: iam.Role,
    objects_arn: Callable[[str], str],
    *,
    prefixes: tuple[str, ...],
    job_prefix: str | None,
) -> None:
    """What deleting a job's data needs: s3:DeleteObject under `prefixes` (of the recording,
    transcript and result a job may have), and, with `job_prefix`, deleting its Transcribe
    job. A role that only ever discards one kind of object (the starter: a late upload)
    gets only that prefix and no Transcribe rights."""
    allow_objects(role, ["s3:DeleteObject"], {p: objects_arn(p) for p in prefixes})
    if job_prefix is not None:
        allow_transcribe_get(scope, role, job_prefix=job_prefix, delete=True)
