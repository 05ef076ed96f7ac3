"""The backfill state machine as deployed: the definition the local stack runs, its
Distributed Map (item reader, batches, concurrency from the quotas, failure tolerance,
results), and the least privilege of its role and its function."""

from __future__ import annotations

import json
from typing import Any

import pytest

from alertfusion.backfill.definition import MAP_STATE, SUBSTITUTIONS, definition_text
from alertfusion.backfill.plan import plan_for
from tests.infra.conftest import Synth
from tests.infra.templates import (
    allowed_actions,
    as_list,
    find_one,
    function_role_id,
    join_suffix,
    ref_id,
    resources_for,
    role_statements,
)

pytestmark = pytest.mark.infra

XRAY = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
}
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


def _machine(synth: Synth) -> tuple[str, dict[str, Any]]:
    return find_one(synth.templates["pipeline"], "AWS::StepFunctions::StateMachine", "Backfill")


def test_the_deployed_definition_is_the_one_the_local_stack_runs(synth: Synth) -> None:
    _, machine = _machine(synth)
    props = machine["Properties"]
    plan = plan_for(synth.config.transcribe_policy, synth.config.backfill_settings())
    assert props["DefinitionString"] == definition_text(plan)
    assert set(props["DefinitionSubstitutions"]) == set(SUBSTITUTIONS)
    template = synth.templates["pipeline"]
    function_id = find_one(template, "AWS::Lambda::Function", "BackfillFunction")[0]
    queue_id = find_one(template, "AWS::SQS::Queue", "QueuesWork4")[0]
    subs = props["DefinitionSubstitutions"]
    assert subs["BackfillFunctionArn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    assert ref_id(subs["WorkQueueUrl"]) == queue_id
    assert props["StateMachineType"] == "STANDARD"
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert props["LoggingConfiguration"]["Level"] == "ALL"


def test_a_distributed_map_reads_the_listing_in_batches_within_the_transcribe_quota(
    synth: Synth,
) -> None:
    _, machine = _machine(synth)
    definition = json.loads(machine["Properties"]["DefinitionString"])
    state = definition["States"][MAP_STATE]
    assert state["Type"] == "Map"
    assert state["ItemProcessor"]["ProcessorConfig"] == {
        "Mode": "DISTRIBUTED",
        "ExecutionType": "STANDARD",
    }
    assert state["ItemReader"]["Resource"] == "arn:aws:states:::s3:listObjectsV2"
    assert state["ItemReader"]["Parameters"] == {"Bucket.$": "$.bucket", "Prefix.$": "$.prefix"}
    assert state["ItemBatcher"]["MaxItemsPerBatch"] == synth.config.backfill_batch_size == 10
    # default quotas: 250 concurrent Transcribe jobs, half for backfills, every object
    # transcribed (always): 125 jobs in flight = 12 batches of 10
    assert state["MaxConcurrency"] == 12
    jobs_in_flight = state["MaxConcurrency"] * state["ItemBatcher"]["MaxItemsPerBatch"]
    assert jobs_in_flight <= synth.config.transcribe_concurrent_jobs_quota * 0.5
    assert state["ItemBatcher"]["BatchInput"]["start_rate_per_second"] == 12.5
    assert state["ToleratedFailurePercentage"] == 5.0
    assert state["ResultWriter"]["Resource"] == "arn:aws:states:::s3:putObject"
    child = state["ItemProcessor"]["States"]
    assert child["QueueTasks"]["ItemProcessor"]["States"]["SendTask"]["Resource"] == (
        "arn:aws:states:::sqs:sendMessage"
    )
    lambda_steps = [
        s for s in child.values() if s.get("Resource") == "arn:aws:states:::lambda:invoke"
    ]
    assert len(lambda_steps) == 2  # admit and check: per batch, not per object
    assert all("TransientError" in s["Retry"][0]["ErrorEquals"] for s in lambda_steps)


def test_gated_transcription_lets_more_objects_run_at_once() -> None:
    # 125 Transcribe jobs for backfills; gated transcribes about 10 % of the recordings
    always, gated = plan_for("always"), plan_for("gated")
    assert (always.max_concurrency, gated.max_concurrency) == (12, 125)
    assert always.transcribe_jobs_in_flight <= 125 and gated.transcribe_jobs_in_flight <= 125
    assert gated.start_rate_per_second == 10 * always.start_rate_per_second


def test_a_bundle_that_transcribes_itself_is_backfilled_as_wide_as_the_classifier_takes(
    synth: Synth, synth_offline: Synth
) -> None:
    """No Transcribe job bounds the map of a baked bundle that transcribes itself: its
    batches in flight fill the classifier's work queue, which Transcribe's quota no longer
    caps either; and no start is paced."""
    config, plan = synth_offline.config, synth_offline.config.concurrency
    width = config.backfill_settings().map_width
    _, machine = _machine(synth_offline)
    state = json.loads(machine["Properties"]["DefinitionString"])["States"][MAP_STATE]
    assert state["MaxConcurrency"] == width
    assert state["ItemBatcher"]["BatchInput"]["start_rate_per_second"] == 0
    batch = state["ItemBatcher"]["MaxItemsPerBatch"]
    assert plan.work_queue <= width * batch < plan.work_queue + 2 * batch
    assert plan.classifier > config.transcribe_concurrent_jobs_quota
    assert plan.backfill == width + 1
    today = synth.config.concurrency
    assert width > plan_for("always", synth.config.backfill_settings()).max_concurrency
    assert today.classifier == synth.config.transcribe_concurrent_jobs_quota
    assert synth.config.backfill_settings().map_width is None
    for component, prefix in (("pipeline", "BackfillFunction"), ("api", "HttpFunction")):
        function = find_one(synth_offline.templates[component], "AWS::Lambda::Function", prefix)
        env = function[1]["Properties"]["Environment"]["Variables"]
        assert env["BACKFILL_MAP_WIDTH"] == str(width), component


def test_the_state_machine_role_invokes_sends_lists_and_writes_results_only(
    synth: Synth,
) -> None:
    template = synth.templates["pipeline"]
    _, machine = _machine(synth)
    role_id = ref_id({"Ref": machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]})
    assert role_id is not None
    statements = role_statements(template, role_id)
    assert allowed_actions(statements) == (
        XRAY
        | LOG_DELIVERY
        | {
            "lambda:InvokeFunction",
            "sqs:SendMessage",
            "sqs:GetQueueAttributes",
            "sqs:GetQueueUrl",
            "s3:ListBucket",
            "s3:PutObject",
            "s3:GetObject",
            "s3:ListMultipartUploadParts",
            "s3:AbortMultipartUpload",
            "states:StartExecution",
            "states:DescribeExecution",
            "states:StopExecution",
        }
    )
    function_id = find_one(template, "AWS::Lambda::Function", "BackfillFunction")[0]
    invoked = resources_for(statements, "lambda:InvokeFunction")
    assert {json.dumps(r) for r in invoked} == {
        json.dumps({"Fn::GetAtt": [function_id, "Arn"]}),
        json.dumps({"Fn::Join": ["", [{"Fn::GetAtt": [function_id, "Arn"]}, ":*"]]}),
    }
    (queue,) = resources_for(statements, "sqs:SendMessage")
    assert ref_id(queue) == find_one(template, "AWS::SQS::Queue", "QueuesWork4")[0]
    (listing,) = [s for s in statements if "s3:ListBucket" in as_list(s["Action"])]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["uploads/*", "archive/*"]}}
    assert {join_suffix(r) for r in resources_for(statements, "s3:PutObject")} == {
        "/backfills/map-runs/*"
    }


def test_the_backfill_function_admits_and_checks_jobs_without_transcribe(synth: Synth) -> None:
    template = synth.templates["pipeline"]
    function_id = find_one(template, "AWS::Lambda::Function", "BackfillFunction")[0]
    statements = role_statements(template, function_role_id(template, function_id))
    actions = allowed_actions(statements)
    assert not {a for a in actions if a.startswith(("transcribe:", "sqs:", "events:"))}
    prefixes = {join_suffix(r) for r in resources_for(statements, "s3:GetObject")}
    assert prefixes == {"/uploads/*", "/archive/*", "/backfills/*"}
    assert {join_suffix(r) for r in resources_for(statements, "s3:PutObject")} == {"/backfills/*"}
    env = template["Resources"][function_id]["Properties"]["Environment"]["Variables"]
    assert env["BACKFILL_PREFIXES"] == "uploads/,archive/"


def test_the_api_can_start_and_watch_backfills_of_the_deployed_machine(synth: Synth) -> None:
    template = synth.templates["api"]
    function_id = find_one(template, "AWS::Lambda::Function", "HttpFunction")[0]
    env = template["Resources"][function_id]["Properties"]["Environment"]["Variables"]
    assert env["BACKFILL_STATE_MACHINE_ARN"] == {
        "Fn::ImportValue": "alertfusion-test-pipeline-BackfillStateMachineArn"
    }
    statements = role_statements(template, function_role_id(template, function_id))
    assert resources_for(statements, "states:StartExecution") == [
        {"Fn::ImportValue": "alertfusion-test-pipeline-BackfillStateMachineArn"}
    ]
