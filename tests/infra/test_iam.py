"""Least privilege: each function (and the fallback instance) gets exactly what it needs."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.conftest import NAMED_BUNDLES, S3_BUNDLE, Synth
from tests.infra.templates import (
    allowed_actions,
    as_list,
    find_one,
    flatten,
    function_role_id,
    join_suffix,
    ref_id,
    resources_for,
    role_statements,
)

pytestmark = pytest.mark.infra

LOGS = {"logs:CreateLogStream", "logs:PutLogEvents"}
XRAY = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
TABLE_RW = {
    "dynamodb:GetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:ConditionCheckItem",
}
SQS_SEND = {"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
SQS_CONSUME = {
    "sqs:ReceiveMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
}
#: a state machine's X-Ray tracing (sampling rules come from the service, not a resource)
XRAY_SAMPLING = {"xray:GetSamplingRules", "xray:GetSamplingTargets"}
#: a state machine's logging to CloudWatch Logs: the log-delivery actions have no resource
#: type (the Step Functions developer guide's policy names "*"; CDK adds exactly these)
LOG_DELIVERY = {
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}
#: the only actions that may name Resource "*", each because the service has no resource type
STAR_RESOURCE_ACTIONS = (
    XRAY
    | XRAY_SAMPLING
    | LOG_DELIVERY
    | {"transcribe:StartTranscriptionJob", "ecr:GetAuthorizationToken"}
)


def _iam_documents(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    documents = []
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents.append((logical_id, props["PolicyDocument"]))
        elif resource["Type"] == "AWS::IAM::Role":
            documents += [(logical_id, p["PolicyDocument"]) for p in props.get("Policies", [])]
    return documents


def _function_statements(synth: Synth, component: str, prefix: str) -> list[dict[str, Any]]:
    template = synth.templates[component]
    function_id = find_one(template, "AWS::Lambda::Function", prefix)[0]
    return role_statements(template, function_role_id(template, function_id))


def _object_prefixes(statements: list[dict[str, Any]], action: str) -> set[str]:
    return {join_suffix(r) for r in resources_for(statements, action)}


@pytest.mark.parametrize("fixture", ["synth", "synth_s3_bundle"])
def test_no_wildcard_action_and_star_resources_only_where_the_service_forces_it(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    synth: Synth = request.getfixturevalue(fixture)
    for component, template in synth.templates.items():
        for logical_id, document in _iam_documents(template):
            for statement in document["Statement"]:
                if statement["Effect"] != "Allow":
                    continue
                actions = as_list(statement["Action"])
                assert not [a for a in actions if "*" in a], (component, logical_id, actions)
                if "*" in as_list(statement.get("Resource", [])):
                    assert set(actions) <= STAR_RESOURCE_ACTIONS, (component, logical_id)


def test_no_managed_policy_but_the_documented_service_ones(synth: Synth) -> None:
    allowed = {
        "AmazonSSMManagedInstanceCore",  # fallback: Session Manager instead of SSH
        "AmazonAPIGatewayPushToCloudWatchLogs",  # API Gateway's account logging role
        "AWSLambdaBasicExecutionRole",  # CDK's own custom-resource handlers
    }
    for component, template in synth.templates.items():
        for resource in template["Resources"].values():
            if resource["Type"] != "AWS::IAM::Role":
                continue
            for arn in resource["Properties"].get("ManagedPolicyArns", []):
                name = flatten(arn).rsplit("/", 1)[-1]
                assert name in allowed, (component, name)


def test_starter_reads_uploads_writes_transcripts_starts_transcribe_and_nothing_else(
    synth: Synth,
) -> None:
    statements = _function_statements(synth, "pipeline", "StarterFunction")
    assert allowed_actions(statements) == (
        LOGS
        | XRAY
        | SQS_SEND
        | TABLE_RW
        | {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "transcribe:StartTranscriptionJob"}
    )
    assert _object_prefixes(statements, "s3:GetObject") == {"/uploads/*"}
    assert _object_prefixes(statements, "s3:PutObject") == {"/transcripts/*"}
    # an upload for a job its owner deleted (a presigned POST issued before) goes too
    assert _object_prefixes(statements, "s3:DeleteObject") == {"/uploads/*"}
    queues = {ref_id(r) for r in resources_for(statements, "sqs:SendMessage")}
    template = synth.templates["pipeline"]
    assert queues == {
        find_one(template, "AWS::SQS::Queue", "QueuesWork4")[0],
        find_one(template, "AWS::SQS::Queue", "QueuesAsyncFailures")[0],  # on-failure destination
    }
    _assert_transcribe_start_is_pinned_to_the_bucket(synth, statements)


def _assert_transcribe_start_is_pinned_to_the_bucket(
    synth: Synth, statements: list[dict[str, Any]]
) -> None:
    bucket_id = find_one(synth.templates["pipeline"], "AWS::S3::Bucket", "AudioBucket")[0]
    (start,) = [s for s in statements if "transcribe:StartTranscriptionJob" in as_list(s["Action"])]
    assert start["Condition"] == {
        "StringEquals": {"transcribe:OutputBucketName": {"Ref": bucket_id}},
        "StringLike": {"transcribe:OutputKey": "transcripts/*"},
    }


def test_classifier_permissions(synth: Synth) -> None:
    statements = _function_statements(synth, "pipeline", "ClassifierFunction")
    assert allowed_actions(statements) == (
        LOGS
        | XRAY
        | SQS_CONSUME
        | SQS_SEND  # finalize tasks (gated policy, refused media) + the on-failure destination
        | TABLE_RW
        | {
            "s3:GetObject",
            "s3:PutObject",
            "events:PutEvents",
            "transcribe:StartTranscriptionJob",
            "transcribe:GetTranscriptionJob",
        }
        | JOB_DELETION
    )
    # archive/: recordings a backfill brings in (infra/constructs/backfill.py); Transcribe
    # reads them with the classifier's role too
    assert _object_prefixes(statements, "s3:GetObject") == {
        "/uploads/*",
        "/transcripts/*",
        "/archive/*",
    }
    assert _object_prefixes(statements, "s3:PutObject") == {"/results/*", "/transcripts/*"}
    template = synth.templates["pipeline"]
    bus_id = find_one(template, "AWS::Events::EventBus", "EmergencyBus")[0]
    assert [ref_id(r) for r in resources_for(statements, "events:PutEvents")] == [bus_id]
    assert {ref_id(r) for r in resources_for(statements, "sqs:SendMessage")} == {
        find_one(template, "AWS::SQS::Queue", "QueuesWork4")[0],
        find_one(template, "AWS::SQS::Queue", "QueuesAsyncFailures")[0],
    }
    (job_arn,) = resources_for(statements, "transcribe:GetTranscriptionJob")
    assert join_suffix(job_arn) == ":transcription-job/alert-*"
    _assert_transcribe_start_is_pinned_to_the_bucket(synth, statements)
    _assert_deletes_only_job_data(statements)


def test_sweeper_queries_the_index_updates_jobs_asks_transcribe_and_sends_tasks(
    synth: Synth,
) -> None:
    statements = _function_statements(synth, "pipeline", "SweeperFunction")
    assert allowed_actions(statements) == (
        LOGS
        | XRAY
        | SQS_SEND
        | {
            "dynamodb:Query",
            "dynamodb:GetItem",
            "dynamodb:UpdateItem",
            "dynamodb:ConditionCheckItem",
            "transcribe:GetTranscriptionJob",
        }
        | JOB_DELETION  # finishing the purge of a job deleted while Transcribe ran
    )
    (query_resource,) = resources_for(statements, "dynamodb:Query")
    assert join_suffix(query_resource) == "/index/by_status"
    _assert_deletes_only_job_data(statements)


#: what deleting a job's data needs (DELETE /jobs/{id}, and the steps that find a tombstone)
JOB_DELETION = {
    "s3:DeleteObject",
    "transcribe:GetTranscriptionJob",
    "transcribe:DeleteTranscriptionJob",
}


def _assert_deletes_only_job_data(statements: list[dict[str, Any]]) -> None:
    """Deletion reaches the recording, transcript and result prefixes and this deployment's
    Transcribe jobs, nothing else (no archive/, no backfills/, no other job names)."""
    assert _object_prefixes(statements, "s3:DeleteObject") == {
        "/uploads/*",
        "/transcripts/*",
        "/results/*",
    }
    (job_arn,) = resources_for(statements, "transcribe:DeleteTranscriptionJob")
    assert join_suffix(job_arn) == ":transcription-job/alert-*"


#: what starting and watching backfills needs (POST /backfills, GET /backfills/{id})
BACKFILL_CONTROL = {
    "states:StartExecution",
    "states:DescribeExecution",
    "states:ListMapRuns",
    "states:DescribeMapRun",
    "states:RedriveExecution",
    "s3:ListBucket",
}


def test_api_presigns_and_reads_uploads_and_uses_the_table_only(synth: Synth) -> None:
    statements = _function_statements(synth, "api", "HttpFunction")
    assert allowed_actions(statements) == (
        LOGS | XRAY | TABLE_RW | {"s3:GetObject", "s3:PutObject"} | BACKFILL_CONTROL | JOB_DELETION
    )
    _assert_deletes_only_job_data(statements)
    uploads = {
        "Fn::Join": [
            "",
            [{"Fn::ImportValue": "alertfusion-test-pipeline-AudioBucketArn"}, "/uploads/*"],
        ]
    }
    assert resources_for(statements, "s3:PutObject") == [uploads]
    # reads: uploads/ (/predict_s3, backfill dry runs), archive/ (dry runs), backfills/ (results)
    assert _object_prefixes(statements, "s3:GetObject") == {
        "/uploads/*",
        "/archive/*",
        "/backfills/*",
    }


def test_fallback_instance_has_the_api_rights_plus_image_pull_key_and_logs(synth: Synth) -> None:
    template = synth.templates["fallback"]
    (profile,) = synth.resources("fallback", "AWS::IAM::InstanceProfile").values()
    (role_ref,) = profile["Properties"]["Roles"]
    statements = role_statements(template, ref_id(role_ref) or "")
    assert allowed_actions(statements) == (
        LOGS
        | TABLE_RW
        | JOB_DELETION
        | {"s3:GetObject", "s3:PutObject", "secretsmanager:GetSecretValue"}
        | {
            "ecr:GetAuthorizationToken",
            "ecr:BatchCheckLayerAvailability",
            "ecr:GetDownloadUrlForLayer",
            "ecr:BatchGetImage",
        }
    )
    assert resources_for(statements, "secretsmanager:GetSecretValue") == [
        {"Fn::ImportValue": "alertfusion-test-pipeline-ClientApiKeySecretArn"}
    ]
    _assert_deletes_only_job_data(statements)


def test_an_s3_bundle_is_readable_by_the_image_functions_its_manifest_by_the_starter(
    synth_s3_bundle: Synth,
) -> None:
    bucket, _, key = S3_BUNDLE.removeprefix("s3://").partition("/")
    expected = {f"arn:aws:s3:::{bucket}/{key}", f"arn:aws:s3:::{bucket}/{key}/*"}
    for component, prefix in (("pipeline", "ClassifierFunction"), ("api", "HttpFunction")):
        statements = _function_statements(synth_s3_bundle, component, prefix)
        bundle = {r for r in resources_for(statements, "s3:GetObject") if isinstance(r, str)}
        assert bundle == expected, component
        env = find_one(synth_s3_bundle.templates[component], "AWS::Lambda::Function", prefix)[1]
        assert env["Properties"]["Environment"]["Variables"]["MODEL_BUNDLE"] == S3_BUNDLE
    # the starter reads the manifest alone (does the recipe read a transcript?), the sweeper
    # nothing of the bundle
    starter = _function_statements(synth_s3_bundle, "pipeline", "StarterFunction")
    bundle = {r for r in resources_for(starter, "s3:GetObject") if isinstance(r, str)}
    assert bundle == {f"arn:aws:s3:::{bucket}/{key}/manifest.json"}
    template = synth_s3_bundle.templates["pipeline"]
    env = find_one(template, "AWS::Lambda::Function", "StarterFunction")[1]
    assert env["Properties"]["Environment"]["Variables"]["MODEL_BUNDLE"] == S3_BUNDLE
    sweeper = _function_statements(synth_s3_bundle, "pipeline", "SweeperFunction")
    assert not any(isinstance(r, str) for r in resources_for(sweeper, "s3:GetObject"))


def test_named_bundles_are_served_read_and_keep_transcribe(synth_named_bundles: Synth) -> None:
    """`-c bundles=`: every function that loads bundles is told of them and may read each
    one's key or prefix; the starter only each manifest; and, although the baked default
    transcribes itself, the named ones (read at run time) may still start Transcribe."""
    named = ",".join(f"{name}={uri}" for name, uri in NAMED_BUNDLES.items())
    bases = [f"arn:aws:s3:::{uri.removeprefix('s3://')}" for uri in NAMED_BUNDLES.values()]
    for component, prefix in (("pipeline", "ClassifierFunction"), ("api", "HttpFunction")):
        props = find_one(synth_named_bundles.templates[component], "AWS::Lambda::Function", prefix)[
            1
        ]["Properties"]
        assert props["Environment"]["Variables"]["MODEL_BUNDLES"] == named, component
        assert props["EphemeralStorage"] == {"Size": 2 * 2048}, component
        statements = _function_statements(synth_named_bundles, component, prefix)
        readable = {r for r in resources_for(statements, "s3:GetObject") if isinstance(r, str)}
        assert readable == {arn for base in bases for arn in (base, f"{base}/*")}, component
    template = synth_named_bundles.templates["pipeline"]
    starter_env = find_one(template, "AWS::Lambda::Function", "StarterFunction")[1]
    variables = starter_env["Properties"]["Environment"]["Variables"]
    assert variables["MODEL_BUNDLES"] == named and "MODEL_BUNDLE" not in variables
    assert variables["TRANSCRIPT_SOURCE"] == "model"  # the default bundle's, as before
    starter = _function_statements(synth_named_bundles, "pipeline", "StarterFunction")
    manifests = {r for r in resources_for(starter, "s3:GetObject") if isinstance(r, str)}
    assert manifests == {f"{base}/manifest.json" for base in bases}
    assert "transcribe:StartTranscriptionJob" in allowed_actions(starter)
    assert "/transcripts/*" in _object_prefixes(starter, "s3:PutObject")
    classifier = _function_statements(synth_named_bundles, "pipeline", "ClassifierFunction")
    assert "transcribe:StartTranscriptionJob" in allowed_actions(classifier)
    sweeper = _function_statements(synth_named_bundles, "pipeline", "SweeperFunction")
    assert not any(isinstance(r, str) for r in resources_for(sweeper, "s3:GetObject"))


def test_a_baked_bundle_that_transcribes_itself_may_not_start_transcribe(
    synth_offline: Synth,
) -> None:
    """Its recipe's transcript comes from its own speech-to-text model: no function may start
    a Transcribe job or write transcripts; what finishes a job started under an earlier
    deployment (reading its transcript, asking Transcribe about it, deleting it) stays."""
    template = synth_offline.templates["pipeline"]
    for prefix in ("StarterFunction", "ClassifierFunction", "SweeperFunction"):
        env = find_one(template, "AWS::Lambda::Function", prefix)[1]
        assert env["Properties"]["Environment"]["Variables"]["TRANSCRIPT_SOURCE"] == "model"
    starter = _function_statements(synth_offline, "pipeline", "StarterFunction")
    assert "transcribe:StartTranscriptionJob" not in allowed_actions(starter)
    assert "s3:PutObject" not in allowed_actions(starter)
    classifier = _function_statements(synth_offline, "pipeline", "ClassifierFunction")
    actions = allowed_actions(classifier)
    assert "transcribe:StartTranscriptionJob" not in actions
    assert "transcribe:GetTranscriptionJob" in actions
    assert _object_prefixes(classifier, "s3:PutObject") == {"/results/*"}
    assert "/transcripts/*" in _object_prefixes(classifier, "s3:GetObject")
    api = _function_statements(synth_offline, "api", "HttpFunction")
    assert "transcribe:StartTranscriptionJob" not in allowed_actions(api)
