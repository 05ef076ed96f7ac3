"""The pipeline stack: bucket, table, queues, functions, rules, alarms (Template assertions)."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match

from alertfusion import limits
from alertfusion.settings import PipelineSettings
from infra.config import LAMBDA_PYTHON_VERSION
from infra.constructs.queues import VISIBILITY_TIMEOUT_FACTOR, WORK_MAX_RECEIVE_COUNT
from tests.infra.conftest import ALARM_EMAIL, CORS_ORIGIN, Synth
from tests.infra.templates import as_env, find_one, flatten, ref_id

pytestmark = pytest.mark.infra

DEFAULT_RETENTION_DAYS = 7
DEFAULT_CLASSIFIER_TIMEOUT = 60


def _bucket(synth: Synth, prefix: str) -> dict[str, Any]:
    return find_one(synth.templates["pipeline"], "AWS::S3::Bucket", prefix)[1]


def _function(synth: Synth, prefix: str) -> tuple[str, dict[str, Any]]:
    return find_one(synth.templates["pipeline"], "AWS::Lambda::Function", prefix)


# ---- bucket ------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["AudioBucket", "AudioAccessLogs"])
def test_buckets_block_public_access_and_encrypt(synth: Synth, prefix: str) -> None:
    props = _bucket(synth, prefix)["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]


@pytest.mark.parametrize("prefix", ["AudioBucket", "AudioAccessLogs"])
def test_bucket_policies_refuse_plain_http_and_old_tls(synth: Synth, prefix: str) -> None:
    bucket_id = find_one(synth.templates["pipeline"], "AWS::S3::Bucket", prefix)[0]
    policies = [
        r["Properties"]["PolicyDocument"]["Statement"]
        for r in synth.resources("pipeline", "AWS::S3::BucketPolicy").values()
        if ref_id(r["Properties"]["Bucket"]) == bucket_id
    ]
    assert len(policies) == 1
    denies = [s for s in policies[0] if s["Effect"] == "Deny"]
    assert {"Bool": {"aws:SecureTransport": "false"}} in [s["Condition"] for s in denies]
    assert {"NumericLessThan": {"s3:TlsVersion": 1.2}} in [s["Condition"] for s in denies]


def test_audio_bucket_logs_access_expires_recordings_and_allows_browser_posts(
    synth: Synth,
) -> None:
    props = _bucket(synth, "AudioBucket")["Properties"]
    logs_id = find_one(synth.templates["pipeline"], "AWS::S3::Bucket", "AudioAccessLogs")[0]
    assert ref_id(props["LoggingConfiguration"]["DestinationBucketName"]) == logs_id
    expiring = {
        rule["Prefix"]: rule["ExpirationInDays"]
        for rule in props["LifecycleConfiguration"]["Rules"]
        if "Prefix" in rule
    }
    assert expiring == {
        "uploads/": DEFAULT_RETENTION_DAYS,
        "transcripts/": DEFAULT_RETENTION_DAYS,
        "results/": DEFAULT_RETENTION_DAYS,
    }
    assert "VersioningConfiguration" not in props  # deleted audio must not linger as versions
    (cors,) = props["CorsConfiguration"]["CorsRules"]
    assert cors["AllowedMethods"] == ["POST"]
    # the configured origin, then the page's own: API Gateway, and the fallback (deployed)
    assert cors["AllowedOrigins"] == [
        CORS_ORIGIN,
        "https://*.execute-api.ap-northeast-2.amazonaws.com",
        "http://*.ap-northeast-2.compute.amazonaws.com:8000",
    ]


def test_the_page_served_by_api_gateway_can_always_post_to_the_bucket(
    synth_s3_bundle: Synth,
) -> None:
    """No origin configured and no fallback: the rule still admits the page's own origin,
    which is known only after deployment (infra.origins explains the pattern)."""
    props = _bucket(synth_s3_bundle, "AudioBucket")["Properties"]
    (cors,) = props["CorsConfiguration"]["CorsRules"]
    assert cors["AllowedMethods"] == ["POST"]
    assert cors["AllowedOrigins"] == ["https://*.execute-api.ap-northeast-2.amazonaws.com"]


def test_data_is_retained_by_default_and_deleted_on_request(
    synth: Synth, synth_s3_bundle: Synth
) -> None:
    for prefix in ("AudioBucket", "AudioAccessLogs"):
        assert _bucket(synth, prefix)["DeletionPolicy"] == "Retain"
        assert _bucket(synth_s3_bundle, prefix)["DeletionPolicy"] == "Delete"
    table = find_one(synth.templates["pipeline"], "AWS::DynamoDB::Table", "JobsTable")[1]
    assert table["DeletionPolicy"] == "Retain"
    assert table["Properties"]["DeletionProtectionEnabled"] is True


# ---- jobs table --------------------------------------------------------------------------


def test_jobs_table_is_on_demand_with_ttl_pitr_encryption_and_the_status_index(
    synth: Synth,
) -> None:
    synth.template("pipeline").has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [{"AttributeName": "job_id", "KeyType": "HASH"}],
            "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            # SSEEnabled without a key id: the AWS-managed key aws/dynamodb
            "SSESpecification": {"SSEEnabled": True},
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": "by_status",
                    "KeySchema": [
                        {"AttributeName": "status", "KeyType": "HASH"},
                        {"AttributeName": "updated_at", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
            ],
        },
    )


# ---- queues ------------------------------------------------------------------------------


def test_every_queue_is_encrypted_and_refuses_plain_http(synth: Synth) -> None:
    queues = synth.resources("pipeline", "AWS::SQS::Queue")
    assert len(queues) == 4
    for logical_id, queue in queues.items():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True, logical_id
        policies = [
            p["Properties"]["PolicyDocument"]["Statement"]
            for p in synth.resources("pipeline", "AWS::SQS::QueuePolicy").values()
            if logical_id in {ref_id(q) for q in p["Properties"]["Queues"]}
        ]
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for statements in policies
            for s in statements
        ), logical_id


def test_work_queue_hides_a_task_six_classifier_timeouts_and_redrives_to_its_dlq(
    synth: Synth,
) -> None:
    template = synth.templates["pipeline"]
    work = find_one(template, "AWS::SQS::Queue", "QueuesWork4")[1]["Properties"]
    dlq_id = find_one(template, "AWS::SQS::Queue", "QueuesWorkDlq")[0]
    assert work["VisibilityTimeout"] == VISIBILITY_TIMEOUT_FACTOR * DEFAULT_CLASSIFIER_TIMEOUT
    assert work["RedrivePolicy"]["maxReceiveCount"] == WORK_MAX_RECEIVE_COUNT
    assert ref_id(work["RedrivePolicy"]["deadLetterTargetArn"]) == dlq_id


# ---- functions ---------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["StarterFunction", "SweeperFunction"])
def test_zip_functions_run_the_lambda_python_on_x86_with_both_layers(
    synth: Synth, prefix: str
) -> None:
    props = _function(synth, prefix)[1]["Properties"]
    assert props["Runtime"] == f"python{LAMBDA_PYTHON_VERSION}" == "python3.12"
    assert props["Architectures"] == ["x86_64"]
    assert props["Handler"] == "app.handler"
    layers = props["Layers"]
    core_id = find_one(synth.templates["pipeline"], "AWS::Lambda::LayerVersion", "LayersCore")[0]
    assert {"Ref": core_id} in layers
    parameters = synth.templates["pipeline"]["Parameters"]
    powertools = [
        layer
        for layer in layers
        if ref_id(layer) in parameters
        and parameters[ref_id(layer)]["Default"]
        == "/aws/service/powertools/python/x86_64/python3.12/" + synth.config.powertools_version
    ]
    assert len(powertools) == 1


def test_classifier_is_the_x86_image_with_context_memory_and_timeout(synth: Synth) -> None:
    props = _function(synth, "ClassifierFunction")[1]["Properties"]
    assert props["PackageType"] == "Image"
    assert props["Architectures"] == ["x86_64"]
    assert props["ImageConfig"]["Command"] == ["functions.classifier.app.handler"]
    assert props["MemorySize"] == synth.config.classifier_memory_mb
    assert props["Timeout"] == synth.config.classifier_timeout_seconds
    env = props["Environment"]["Variables"]
    assert env["HOME"] == "/tmp" and env["BUNDLE_CACHE_DIR"].startswith("/tmp/")
    assert "NUMBA_CACHE_DIR" not in env  # numba is not in the runtime
    (image,) = synth.assets["pipeline"]["dockerImages"].values()
    assert image["source"]["platform"] == "linux/amd64"


@pytest.mark.parametrize("prefix", ["StarterFunction", "ClassifierFunction", "SweeperFunction"])
def test_functions_trace_log_with_retention_and_get_the_pipeline_settings(
    synth: Synth, prefix: str
) -> None:
    props = _function(synth, prefix)[1]["Properties"]
    assert props["TracingConfig"] == {"Mode": "Active"}
    group = synth.templates["pipeline"]["Resources"][ref_id(props["LoggingConfig"]["LogGroup"])]
    assert group["Properties"]["RetentionInDays"] == synth.config.log_retention_days
    required = {
        str(field.validation_alias)
        for field in PipelineSettings.model_fields.values()
        if field.is_required()
    }
    assert required <= set(props["Environment"]["Variables"])
    assert props["Environment"]["Variables"]["TRANSCRIBE_JOB_PREFIX"] == "alert-"
    # the default bundle reads Amazon Transcribe's transcript (infra reads its recipe)
    assert props["Environment"]["Variables"]["TRANSCRIPT_SOURCE"] == "aws_transcribe"
    # the default context deploys the core library's limits (alertfusion.limits)
    settings = PipelineSettings.model_validate(as_env(props["Environment"]["Variables"]))
    assert settings.min_audio_seconds == limits.MIN_AUDIO_SECONDS
    assert settings.max_audio_seconds == limits.MAX_AUDIO_SECONDS
    assert settings.max_upload_bytes == limits.MAX_UPLOAD_BYTES


def test_every_function_in_every_stack_logs_with_retention(synth: Synth) -> None:
    """Ours name their log group; CDK's custom-resource handlers get /aws/lambda/<name>
    created before anything invokes them."""
    for component, template in synth.templates.items():
        resources = template["Resources"]
        named = {
            flatten(r["Properties"].get("LogGroupName", "")): lid
            for lid, r in resources.items()
            if r["Type"] == "AWS::Logs::LogGroup"
        }
        for logical_id, function in synth.resources(component, "AWS::Lambda::Function").items():
            own = function["Properties"].get("LoggingConfig", {}).get("LogGroup")
            group_id = ref_id(own) if own else named.get(f"/aws/lambda/<{logical_id}>")
            assert group_id, f"{component}/{logical_id} has no log group of ours"
            group = resources[group_id]["Properties"]
            assert group["RetentionInDays"] == synth.config.log_retention_days
            if not own:
                for custom in resources.values():
                    if custom["Type"].startswith("Custom::"):
                        assert group_id in custom.get("DependsOn", []), logical_id


@pytest.mark.parametrize(("prefix", "retries"), [("Starter", 2), ("Classifier", 2), ("Sweeper", 0)])
def test_async_failures_go_to_the_failure_queue(synth: Synth, prefix: str, retries: int) -> None:
    function_id = _function(synth, f"{prefix}Function")[0]
    failures_id = find_one(synth.templates["pipeline"], "AWS::SQS::Queue", "QueuesAsyncFailures")[0]
    configs = [
        c["Properties"]
        for c in synth.resources("pipeline", "AWS::Lambda::EventInvokeConfig").values()
        if ref_id(c["Properties"]["FunctionName"]) == function_id
    ]
    assert len(configs) == 1
    assert configs[0]["MaximumRetryAttempts"] == retries
    destination = configs[0]["DestinationConfig"]["OnFailure"]["Destination"]
    assert ref_id(destination) == failures_id


def test_uploads_notify_the_starter(synth: Synth) -> None:
    starter_id = _function(synth, "StarterFunction")[0]
    synth.template("pipeline").has_resource_properties(
        "Custom::S3BucketNotifications",
        {
            "NotificationConfiguration": {
                "LambdaFunctionConfigurations": [
                    {
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {
                            "Key": {"FilterRules": [{"Name": "prefix", "Value": "uploads/"}]}
                        },
                        "LambdaFunctionArn": {"Fn::GetAtt": [starter_id, "Arn"]},
                    }
                ]
            }
        },
    )


def test_transcribe_rule_matches_only_this_pipelines_finished_jobs(synth: Synth) -> None:
    classifier_id = _function(synth, "ClassifierFunction")[0]
    events_dlq = find_one(synth.templates["pipeline"], "AWS::SQS::Queue", "QueuesEventsDlq")[0]
    synth.template("pipeline").has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["aws.transcribe"],
                "detail-type": ["Transcribe Job State Change"],
                "detail": {
                    "TranscriptionJobName": [{"prefix": "alert-"}],
                    "TranscriptionJobStatus": ["COMPLETED", "FAILED"],
                },
            },
            "Targets": [
                Match.object_like(
                    {
                        "Arn": {"Fn::GetAtt": [classifier_id, "Arn"]},
                        "RetryPolicy": {
                            "MaximumRetryAttempts": 8,
                            "MaximumEventAgeInSeconds": 7200,
                        },
                        "DeadLetterConfig": {"Arn": {"Fn::GetAtt": [events_dlq, "Arn"]}},
                    }
                )
            ],
        },
    )


def test_classifier_consumes_the_work_queue_reporting_partial_failures(synth: Synth) -> None:
    classifier_id = _function(synth, "ClassifierFunction")[0]
    work_id = find_one(synth.templates["pipeline"], "AWS::SQS::Queue", "QueuesWork4")[0]
    synth.template("pipeline").has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "FunctionName": {"Ref": classifier_id},
            "EventSourceArn": {"Fn::GetAtt": [work_id, "Arn"]},
            "BatchSize": 1,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        },
    )


def test_sweeper_runs_every_five_minutes_with_a_dlq(synth: Synth) -> None:
    sweeper_id = _function(synth, "SweeperFunction")[0]
    synth.template("pipeline").has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": "rate(5 minutes)",
            "Targets": [
                Match.object_like(
                    {
                        "Arn": {"Fn::GetAtt": [sweeper_id, "Arn"]},
                        "DeadLetterConfig": Match.any_value(),
                        "RetryPolicy": {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 300},
                    }
                )
            ],
        },
    )


# ---- alarms ------------------------------------------------------------------------------


def _alarms(synth: Synth, component: str) -> list[dict[str, Any]]:
    return [a["Properties"] for a in synth.resources(component, "AWS::CloudWatch::Alarm").values()]


def test_every_dead_letter_queue_has_a_not_empty_alarm(synth: Synth) -> None:
    template = synth.templates["pipeline"]
    dlqs = {
        find_one(template, "AWS::SQS::Queue", p)[0]
        for p in ("QueuesWorkDlq", "QueuesEventsDlq", "QueuesAsyncFailures")
    }
    watched = {
        ref_id(d["Value"]) if isinstance(d["Value"], dict) and "Fn::GetAtt" in d["Value"] else None
        for a in _alarms(synth, "pipeline")
        if a["MetricName"] == "ApproximateNumberOfMessagesVisible"
        for d in a["Dimensions"]
    }
    assert dlqs <= watched
    for alarm in _alarms(synth, "pipeline"):
        if alarm["MetricName"] == "ApproximateNumberOfMessagesVisible":
            assert alarm["Threshold"] == 1
            assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_the_functions_that_serve_models_alarm_on_a_failed_selfcheck(synth: Synth) -> None:
    for component, service in (("pipeline", "alertfusion-classifier"), ("api", "alertfusion-api")):
        alarms = [a for a in _alarms(synth, component) if a["MetricName"] == "SelfCheckFailed"]
        assert len(alarms) == 1, component
        alarm = alarms[0]
        assert alarm["Namespace"] == "alertfusion"
        assert alarm["Dimensions"] == [{"Name": "service", "Value": service}]
        assert alarm["Statistic"] == "Sum" and alarm["Threshold"] == 1
        assert alarm["TreatMissingData"] == "notBreaching"
        # the dimension is the service name the function's metrics carry
        functions = synth.resources(component, "AWS::Lambda::Function").values()
        assert any(
            f["Properties"]
            .get("Environment", {})
            .get("Variables", {})
            .get("POWERTOOLS_SERVICE_NAME")
            == service
            for f in functions
        )


def test_every_function_has_error_and_throttle_alarms(synth: Synth) -> None:
    for component in ("pipeline", "api"):
        functions = {
            lid
            for lid, r in synth.resources(component, "AWS::Lambda::Function").items()
            if not lid.startswith("BucketNotificationsHandler")
        }
        for metric in ("Errors", "Throttles"):
            watched = {
                ref_id(d["Value"])
                for a in _alarms(synth, component)
                if a["MetricName"] == metric
                for d in a["Dimensions"]
            }
            assert functions <= watched, (component, metric)


def test_alarms_notify_the_encrypted_topic_that_mails_the_operators(synth: Synth) -> None:
    template = synth.template("pipeline")
    template.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": ALARM_EMAIL}
    )
    template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})
    topic_id = find_one(synth.templates["pipeline"], "AWS::SNS::Topic", "AlarmTopic")[0]
    for alarm in _alarms(synth, "pipeline"):
        assert alarm["AlarmActions"] == [{"Ref": topic_id}]
    export = {"Fn::ImportValue": "alertfusion-test-pipeline-AlarmTopicArn"}
    for alarm in _alarms(synth, "api"):
        assert alarm["AlarmActions"] == [export]


def test_without_an_email_there_is_no_topic_but_the_alarms_stay(synth_s3_bundle: Synth) -> None:
    assert not synth_s3_bundle.resources("pipeline", "AWS::SNS::Topic")
    alarms = _alarms(synth_s3_bundle, "pipeline")
    assert alarms and all("AlarmActions" not in a for a in alarms)


# ---- outputs -----------------------------------------------------------------------------


def test_outputs_name_what_operators_and_the_smoke_test_need(synth: Synth) -> None:
    outputs = synth.templates["pipeline"]["Outputs"]
    for key in (
        "AudioBucketName",
        "JobsTableName",
        "EmergencyBusName",
        "WorkQueueUrl",
        "WorkQueueName",
        "WorkDlqName",
        "EventsDlqName",
        "AsyncFailuresQueueName",
        "ClientApiKeySecretArn",
    ):
        assert key in outputs, key
    assert (
        outputs["AudioBucketName"]["Export"]["Name"] == "alertfusion-test-pipeline-AudioBucketName"
    )
