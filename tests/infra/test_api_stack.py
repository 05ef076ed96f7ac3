"""The API stack: REST API → API function, binary media types, API key + usage plan, logs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match

from infra.constructs.api import BINARY_MEDIA_TYPES
from tests.infra.conftest import CORS_ORIGIN, TEST_STAGE, Synth
from tests.infra.templates import (
    api_methods,
    as_env,
    find_one,
    flatten,
    function_role_id,
    join_suffix,
    ref_id,
    resources_for,
    role_statements,
)

pytestmark = pytest.mark.infra


def test_binary_media_types_keep_multipart_and_audio_bodies_intact(synth: Synth) -> None:
    (api,) = synth.resources("api", "AWS::ApiGateway::RestApi").values()
    assert sorted(api["Properties"]["BinaryMediaTypes"]) == sorted(
        ["multipart/form-data", "audio/*", "application/octet-stream"]
    )
    assert set(BINARY_MEDIA_TYPES) == set(api["Properties"]["BinaryMediaTypes"])
    assert api["Properties"]["EndpointConfiguration"] == {"Types": ["REGIONAL"]}


#: GET routes a browser (the page) or a health probe calls: no API key on them
KEY_FREE_GET = {
    "/",
    "/upload",
    "/static/{name}",
    "/healthz",
    "/readyz",
    "/bundles",
    "/openapi.json",
    "/auth/config",
}
#: every resource of the API: the key-free paths, their parents /static and /auth, the proxy
ALL_PATHS = KEY_FREE_GET | {"/static", "/auth", "/{proxy+}"}


@pytest.mark.parametrize("fixture", ["synth", "synth_s3_bundle"])
def test_every_method_goes_to_the_api_function_through_lambda_proxy(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    synth: Synth = request.getfixturevalue(fixture)
    function_id = find_one(synth.templates["api"], "AWS::Lambda::Function", "HttpFunction")[0]
    methods = api_methods(synth.templates["api"])
    assert {path for _, path in methods} == ALL_PATHS
    for (verb, path), props in methods.items():
        assert props["Integration"]["Type"] == "AWS_PROXY", (verb, path)
        assert props["Integration"]["IntegrationHttpMethod"] == "POST"
        assert f"<{function_id}.Arn>" in flatten(props["Integration"]["Uri"]), (verb, path)
        assert props["AuthorizationType"] == "NONE"
    # every path, the explicit ones included, takes any method with the key
    assert {path for verb, path in methods if verb == "ANY"} == ALL_PATHS
    resources = synth.resources("api", "AWS::ApiGateway::Resource").values()
    (proxy,) = [r for r in resources if r["Properties"]["PathPart"] == "{proxy+}"]
    assert "Fn::GetAtt" in proxy["Properties"]["ParentId"]  # the greedy proxy hangs off "/"


def test_key_free_methods_are_the_page_assets_probes_schema_and_cors_preflights(
    synth: Synth,
) -> None:
    """With a CORS origin configured: the GETs, plus OPTIONS everywhere (a preflight never
    carries x-api-key). Every other method and path requires the key."""
    methods = api_methods(synth.templates["api"])
    key_free = {key for key, props in methods.items() if props["ApiKeyRequired"] is False}
    keyed = {key for key, props in methods.items() if props["ApiKeyRequired"] is True}
    assert key_free == {("GET", p) for p in KEY_FREE_GET} | {("OPTIONS", p) for p in ALL_PATHS}
    assert keyed == {("ANY", p) for p in ALL_PATHS}
    assert key_free | keyed == set(methods)


def test_without_cors_origins_only_the_gets_are_key_free(synth_s3_bundle: Synth) -> None:
    methods = api_methods(synth_s3_bundle.templates["api"])
    key_free = {key for key, props in methods.items() if props["ApiKeyRequired"] is not True}
    assert key_free == {("GET", p) for p in KEY_FREE_GET}
    assert not any(verb == "OPTIONS" for verb, _ in methods)
    assert set(methods) - key_free == {("ANY", p) for p in ALL_PATHS}


def _app_routes(routes: list[Any]) -> list[Any]:
    """The app's routes, included routers flattened (none of them adds a path prefix)."""
    found = []
    for route in routes:
        router = getattr(route, "original_router", None)
        if router is not None:
            found += _app_routes(router.routes)
        else:
            assert hasattr(route, "path") and hasattr(route, "methods"), route
            found.append(route)
    return found


def _route_needs_key(route: Any) -> bool:
    """Whether the app's route depends on `require_api_key` or `require_caller` (the key,
    or with AUTH_MODE cognito/oidc a bearer token), directly or through others."""
    from functions.api.deps import require_api_key, require_caller

    pending = list(getattr(getattr(route, "dependant", None), "dependencies", []))
    while pending:
        dependency = pending.pop()
        if dependency.call in (require_api_key, require_caller):
            return True
        pending += dependency.dependencies
    return False


def test_key_free_paths_are_exactly_the_apps_open_get_routes(synth: Synth) -> None:
    """The gateway opens what the app serves without a key, and nothing the app guards:
    a new open route in the app, or a guarded one under a key-free path, fails here."""
    from functions.api.app import create_app
    from functions.api.settings import ApiSettings

    routes = _app_routes(create_app(ApiSettings()).routes)
    open_gets = {r.path for r in routes if "GET" in r.methods and not _route_needs_key(r)}
    guarded = {r.path for r in routes if _route_needs_key(r)}
    methods = api_methods(synth.templates["api"])
    gateway_free_gets = {
        path
        for (verb, path), props in methods.items()
        if verb == "GET" and props["ApiKeyRequired"] is False
    }
    assert gateway_free_gets == open_gets == KEY_FREE_GET
    assert guarded, "the app guards its job and predict routes with the key"
    assert not guarded & gateway_free_gets


def test_one_invoke_permission_covers_the_whole_api(synth: Synth) -> None:
    """One function behind every method: one permission scoped to this API (two per method
    would crowd Lambda's 20 KB resource policy)."""
    function_id = find_one(synth.templates["api"], "AWS::Lambda::Function", "HttpFunction")[0]
    api_id = find_one(synth.templates["api"], "AWS::ApiGateway::RestApi", "HttpApi")[0]
    (permission,) = synth.resources("api", "AWS::Lambda::Permission").values()
    props = permission["Properties"]
    assert props["Principal"] == "apigateway.amazonaws.com"
    assert props["Action"] == "lambda:InvokeFunction"
    assert ref_id(props["FunctionName"]) == function_id
    source = flatten(props["SourceArn"])
    assert source == f"arn:aws:execute-api:ap-northeast-2:<AWS::AccountId>:<{api_id}>/*/*/*"


def test_gateway_errors_carry_the_single_allowed_origin(
    synth: Synth, synth_s3_bundle: Synth
) -> None:
    found = synth.resources("api", "AWS::ApiGateway::GatewayResponse")
    responses = [r["Properties"] for r in found.values()]
    assert sorted(r["ResponseType"] for r in responses) == ["DEFAULT_4XX", "DEFAULT_5XX"]
    for response in responses:
        assert response["ResponseParameters"] == {
            "gatewayresponse.header.Access-Control-Allow-Origin": f"'{CORS_ORIGIN}'"
        }
    assert not synth_s3_bundle.resources("api", "AWS::ApiGateway::GatewayResponse")


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


# ---- the API function's settings ---------------------------------------------------------

#: ApiSettings fields whose app default is right in AWS (infra.constructs.function_support)
DEFAULTS_KEPT = {
    "MAX_TEXT_CHARS",
    "UPLOAD_URL_EXPIRES_SECONDS",
    "TRANSCRIBE_EXPECTED_SECONDS",
    # the issuer's own keys, cached an hour; Cognito's tokens are access tokens unless set
    "AUTH_JWKS_URL",
    "AUTH_JWKS_CACHE_SECONDS",
    "AUTH_TOKEN_USE",
    # the local stack's sign-in only (moto)
    "AUTH_LOCAL_IDP_URL",
    "AUTH_DEMO_USERS",
    "AUTH_DEMO_PASSWORD",
    # uvicorn only (the fallback writes its own URL; behind the gateway, the gateway's host is
    # used and the gateway receives the body before the function runs)
    "PUBLIC_BASE_URL",
    "BODY_TIMEOUT_SECONDS",
    "BODY_IDLE_SECONDS",
}
#: set by the stack with -c auth=cognito|oidc only (tests/infra/test_auth_stack.py)
SET_WITH_TOKENS = {"AUTH_ISSUER", "AUTH_AUDIENCE", "AUTH_SCOPE", "AUTH_HOSTED_UI_URL"}
#: the synchronous Lambda invocation payload limit (bytes of event JSON)
LAMBDA_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024
#: API Gateway's request-header cap, counted twice (headers + multiValueHeaders)
HEADER_ROOM_BYTES = 2 * 10 * 1024


def _api_env(synth: Synth) -> dict[str, Any]:
    props = find_one(synth.templates["api"], "AWS::Lambda::Function", "HttpFunction")[1]
    return dict(props["Properties"]["Environment"]["Variables"])


def test_api_function_settings_are_set_for_the_gateway(synth: Synth) -> None:
    from functions.api.settings import ApiSettings

    env = _api_env(synth)
    assert env["API_KEY_REQUIRED"] == "false"  # API Gateway checks the key in front
    assert "API_KEY" not in env  # the function never holds the client key
    assert env["CORS_ALLOW_ORIGINS"] == CORS_ORIGIN
    assert env["PREDICT_S3_PREFIXES"] == "uploads/"
    settings = ApiSettings.model_validate(as_env(env))
    assert settings.checks_api_key is False
    assert settings.cors_allow_origins == [CORS_ORIGIN]
    assert settings.predict_s3_prefixes == ["uploads/"]


def test_the_api_function_applies_the_core_limits(synth: Synth) -> None:
    """The limits the API function's settings end up with (set by the stack or kept) are
    alertfusion.limits': the API and the engine check the same text limit."""
    from alertfusion import limits
    from alertfusion.settings import EngineSettings, PipelineSettings
    from functions.api.settings import ApiSettings

    env = as_env(_api_env(synth))
    api = ApiSettings.model_validate(env)
    engine = EngineSettings.model_validate({"MODEL_BUNDLE": "/var/task/bundle", **env})
    pipeline = PipelineSettings.model_validate(env)
    assert api.max_text_chars == engine.max_text_chars == limits.MAX_TEXT_CHARS
    assert engine.min_audio_seconds == pipeline.min_audio_seconds == limits.MIN_AUDIO_SECONDS
    assert engine.max_audio_seconds == pipeline.max_audio_seconds == limits.MAX_AUDIO_SECONDS
    assert pipeline.max_upload_bytes == limits.MAX_UPLOAD_BYTES


def test_every_api_setting_is_either_set_by_the_stack_or_a_chosen_default(synth: Synth) -> None:
    """A new ApiSettings field fails here until the stack sets it or the default is chosen."""
    from functions.api.settings import ApiSettings

    env = _api_env(synth)
    for name, field in ApiSettings.model_fields.items():
        variable = str(field.validation_alias)
        if variable == "API_KEY":
            continue  # behind API Gateway: none (the fallback sets it)
        decided = variable in DEFAULTS_KEPT | SET_WITH_TOKENS
        assert (variable in env) != decided, f"{name}: decide {variable}"


def test_body_limit_fits_a_synchronous_lambda_invocation(synth: Synth) -> None:
    limit = int(_api_env(synth)["MAX_BODY_BYTES"])
    base64_size = 4 * ((limit + 2) // 3)
    assert base64_size + HEADER_ROOM_BYTES < LAMBDA_SYNC_PAYLOAD_BYTES
    assert limit >= 4 * 1024 * 1024  # a few minutes of compressed audio still fit


def test_predict_s3_reads_only_prefixes_the_role_may_read(synth: Synth) -> None:
    statements = role_statements(
        synth.templates["api"], function_role_id(synth.templates["api"], _api_function_id(synth))
    )
    readable = {join_suffix(r) for r in resources_for(statements, "s3:GetObject")}
    for prefix in _api_env(synth)["PREDICT_S3_PREFIXES"].split(","):
        assert f"/{prefix}*" in readable, prefix


def test_no_cors_origins_means_no_cors_in_the_app(synth_s3_bundle: Synth) -> None:
    from functions.api.settings import ApiSettings

    env = _api_env(synth_s3_bundle)
    assert env["CORS_ALLOW_ORIGINS"] == ""
    assert ApiSettings.model_validate(as_env(env)).cors_allow_origins == []


def _api_function_id(synth: Synth) -> str:
    return find_one(synth.templates["api"], "AWS::Lambda::Function", "HttpFunction")[0]
