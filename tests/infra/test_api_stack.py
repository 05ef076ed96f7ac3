"""The API stack: REST API → API function, binary media types, API key + usage plan, logs."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match

from infra.constructs.api import BINARY_MEDIA_TYPES
from tests.infra.conftest import TEST_STAGE, Synth
from tests.infra.templates import find_one, flatten, ref_id

pytestmark = pytest.mark.infra


def test_binary_media_types_keep_multipart_and_audio_bodies_intact(synth: Synth) -> None:
    (api,) = synth.resources("api", "AWS::ApiGateway::RestApi").values()
    assert sorted(api["Properties"]["BinaryMediaTypes"]) == sorted(
        ["multipart/form-data", "audio/*", "application/octet-stream"]
    )
    assert set(BINARY_MEDIA_TYPES) == set(api["Properties"]["BinaryMediaTypes"])
    assert api["Properties"]["EndpointConfiguration"] == {"Types": ["REGIONAL"]}


def test_root_and_proxy_go_to_the_api_function_and_require_the_key(synth: Synth) -> None:
    function_id = find_one(synth.templates["api"], "AWS::Lambda::Function", "HttpFunction")[0]
    methods = synth.resources("api", "AWS::ApiGateway::Method")
    assert len(methods) == 2
    for method in methods.values():
        props = method["Properties"]
        assert props["ApiKeyRequired"] is True
        assert props["HttpMethod"] == "ANY"
        assert props["Integration"]["Type"] == "AWS_PROXY"
        assert f"<{function_id}.Arn>" in flatten(props["Integration"]["Uri"])
    (resource,) = synth.resources("api", "AWS::ApiGateway::Resource").values()
    assert resource["Properties"]["PathPart"] == "{proxy+}"


def test_api_function_is_the_same_image_with_the_mangum_command(synth: Synth) -> None:
    props = find_one(synth.templates["api"], "AWS::Lambda::Function", "HttpFunction")[1][
        "Properties"
    ]
    assert props["PackageType"] == "Image"
    assert props["Architectures"] == ["x86_64"]
    assert props["ImageConfig"]["Command"] == ["functions.api.app.handler"]
    assert props["Timeout"] == synth.config.api_timeout_seconds <= 29
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert set(synth.assets["api"]["dockerImages"]) == set(synth.assets["pipeline"]["dockerImages"])


def test_stage_traces_logs_access_and_throttles(synth: Synth) -> None:
    (stage,) = synth.resources("api", "AWS::ApiGateway::Stage").values()
    props = stage["Properties"]
    assert props["StageName"] == TEST_STAGE
    assert props["TracingEnabled"] is True
    access_log_group = find_one(synth.templates["api"], "AWS::Logs::LogGroup", "HttpAccessLogs")[0]
    assert f"<{access_log_group}>" in flatten(props["AccessLogSetting"]["DestinationArn"])
    log_format = json.loads(props["AccessLogSetting"]["Format"])
    assert {"requestId", "status", "ip"} <= set(log_format)
    (settings,) = props["MethodSettings"]
    assert settings["LoggingLevel"] == "ERROR"
    assert settings["DataTraceEnabled"] is False  # bodies hold audio: never logged
    assert settings["ThrottlingRateLimit"] == synth.config.api_throttle_rate_limit
    assert settings["ThrottlingBurstLimit"] == synth.config.api_throttle_burst_limit


def test_usage_plan_throttles_and_caps_the_client_key(synth: Synth) -> None:
    template = synth.template("api")
    key_id = find_one(synth.templates["api"], "AWS::ApiGateway::ApiKey", "HttpApiClientKey")[0]
    plan_id = find_one(synth.templates["api"], "AWS::ApiGateway::UsagePlan", "HttpApiPlan")[0]
    template.has_resource_properties(
        "AWS::ApiGateway::UsagePlan",
        {
            "Throttle": {
                "RateLimit": synth.config.api_throttle_rate_limit,
                "BurstLimit": synth.config.api_throttle_burst_limit,
            },
            "Quota": {"Limit": synth.config.api_quota_per_day, "Period": "DAY"},
            "ApiStages": [Match.object_like({"Stage": Match.any_value()})],
        },
    )
    template.has_resource_properties(
        "AWS::ApiGateway::UsagePlanKey",
        {"KeyId": {"Ref": key_id}, "UsagePlanId": {"Ref": plan_id}, "KeyType": "API_KEY"},
    )
    (key,) = synth.resources("api", "AWS::ApiGateway::ApiKey").values()
    # the key's value is the ClientApiKey secret (the fallback reads the same secret)
    assert flatten(key["Properties"]["Value"]) == (
        "{{resolve:secretsmanager:<import:alertfusion-test-pipeline-ClientApiKeySecretArn>"
        ":SecretString:::}}"
    )


def test_api_alarms_watch_5xx_and_p95_latency(synth: Synth) -> None:
    alarms = [a["Properties"] for a in synth.resources("api", "AWS::CloudWatch::Alarm").values()]
    api_id = find_one(synth.templates["api"], "AWS::ApiGateway::RestApi", "HttpApi")[0]
    by_metric = {a["MetricName"]: a for a in alarms if a["Namespace"] == "AWS/ApiGateway"}
    assert set(by_metric) == {"5XXError", "Latency"}
    assert by_metric["Latency"]["ExtendedStatistic"] == "p95"
    assert by_metric["5XXError"]["Statistic"] == "Sum"
    for alarm in by_metric.values():
        assert (
            alarm["Dimensions"][0]["Value"]
            == synth.templates["api"]["Resources"][api_id]["Properties"]["Name"]
        )


def test_outputs_give_the_url_and_the_key_id(synth: Synth) -> None:
    outputs = synth.templates["api"]["Outputs"]
    stage_id = next(iter(synth.resources("api", "AWS::ApiGateway::Stage")))
    url = flatten(outputs["ApiUrl"]["Value"])
    assert url.startswith("https://") and url.endswith(f"/<{stage_id}>/")
    key_id = find_one(synth.templates["api"], "AWS::ApiGateway::ApiKey", "HttpApiClientKey")[0]
    assert ref_id(outputs["ApiKeyId"]["Value"]) == key_id
