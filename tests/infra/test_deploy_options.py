"""Deploy options, off by default: `-c architecture=arm64`, `-c snapstart=true`,
`-c provisioned=N` (the `synth_options` fixture turns all three on)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from alertfusion.errors import ConfigError
from alertfusion.runtime_hooks import WARM_ON_INIT_ENV
from infra.config import load_config
from infra.constructs.function_support import LIVE_ALIAS
from infra.constructs.function_support import WARM_ON_INIT_ENV as STACK_WARM_ON_INIT_ENV
from infra.constructs.service_image import DOCKERFILE
from tests.infra import image_layout
from tests.infra.conftest import OPTIONS_PROVISIONED, S3_BUNDLE, Synth
from tests.infra.templates import find_one, flatten, ref_id

pytestmark = pytest.mark.infra

#: (component, logical-id prefix) of the functions the image runs
IMAGE_FUNCTIONS = [("pipeline", "ClassifierFunction"), ("api", "HttpFunction")]
ZIP_FUNCTIONS = [("pipeline", "StarterFunction"), ("pipeline", "SweeperFunction")]


def _our_functions(synth: Synth) -> dict[str, dict[str, Any]]:
    """The project's four functions (CDK's own custom-resource handlers left out)."""
    found = {}
    for component, prefix in IMAGE_FUNCTIONS + ZIP_FUNCTIONS:
        logical_id, resource = find_one(synth.templates[component], "AWS::Lambda::Function", prefix)
        found[f"{component}/{logical_id}"] = resource["Properties"]
    return found


def _alias(synth: Synth, component: str, function_prefix: str) -> tuple[str, dict[str, Any]]:
    function_id = find_one(synth.templates[component], "AWS::Lambda::Function", function_prefix)[0]
    aliases = [
        (lid, r["Properties"])
        for lid, r in synth.resources(component, "AWS::Lambda::Alias").items()
        if ref_id(r["Properties"]["FunctionName"]) == function_id
    ]
    assert len(aliases) == 1, aliases
    return aliases[0]


# ---- defaults: none of it ---------------------------------------------------------------


def test_by_default_functions_are_x86_unversioned_and_cold(synth: Synth) -> None:
    for name, props in _our_functions(synth).items():
        assert props["Architectures"] == ["x86_64"], name
        assert "SnapStart" not in props, name
        assert WARM_ON_INIT_ENV not in props["Environment"]["Variables"], name
    for component in synth.templates:
        assert not synth.resources(component, "AWS::Lambda::Alias")
        assert not synth.resources(component, "AWS::Lambda::Version")


def test_the_stack_and_the_runtime_name_the_same_switch() -> None:
    assert STACK_WARM_ON_INIT_ENV == WARM_ON_INIT_ENV


# ---- architecture=arm64 -----------------------------------------------------------------


def test_arm64_puts_every_function_on_graviton(synth_options: Synth) -> None:
    for name, props in _our_functions(synth_options).items():
        assert props["Architectures"] == ["arm64"], name


def test_arm64_builds_the_image_for_linux_arm64(synth_options: Synth) -> None:
    (image_hash,) = synth_options.assets["pipeline"]["dockerImages"]
    source = synth_options.asset_source("pipeline", image_hash)
    assert source["platform"] == "linux/arm64"
    assert source["dockerBuildArgs"]["PLATFORM"] == "linux/arm64"
    context = synth_options.outdir / source["directory"]
    spec = image_layout.resolve(
        image_layout.parse((context / DOCKERFILE).read_text()),
        target=source["dockerBuildTarget"],
        build_args=source["dockerBuildArgs"],
    )
    assert spec.base_platform == "linux/arm64"
    assert set(synth_options.assets["api"]["dockerImages"]) == {image_hash}


def test_arm64_zip_functions_get_the_arm64_layers(synth_options: Synth) -> None:
    template = synth_options.templates["pipeline"]
    (layer,) = synth_options.resources("pipeline", "AWS::Lambda::LayerVersion").values()
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    powertools = [
        p["Default"]
        for p in template["Parameters"].values()
        if str(p.get("Default", "")).startswith("/aws/service/powertools/")
    ]
    assert powertools and all("/python/arm64/" in p for p in powertools), powertools


# ---- snapstart=true, provisioned=N ------------------------------------------------------


@pytest.mark.parametrize(("component", "prefix"), IMAGE_FUNCTIONS)
def test_snapstart_publishes_a_version_behind_the_live_alias(
    synth_options: Synth, component: str, prefix: str
) -> None:
    template = synth_options.templates[component]
    function_id, function = find_one(template, "AWS::Lambda::Function", prefix)
    props = function["Properties"]
    assert props["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert props["Environment"]["Variables"][WARM_ON_INIT_ENV] == "true"
    # SnapStart refuses more than 512 MiB of /tmp
    assert props.get("EphemeralStorage", {"Size": 512})["Size"] <= 512
    (version_id, version), *others = [
        (lid, r)
        for lid, r in synth_options.resources(component, "AWS::Lambda::Version").items()
        if ref_id(r["Properties"]["FunctionName"]) == function_id
    ]
    assert not others
    _, alias = _alias(synth_options, component, prefix)
    assert alias["Name"] == LIVE_ALIAS
    assert ref_id(alias["FunctionVersion"]) == version_id
    assert alias["ProvisionedConcurrencyConfig"] == {
        "ProvisionedConcurrentExecutions": OPTIONS_PROVISIONED
    }


def test_the_work_queue_and_the_transcribe_rule_invoke_the_alias(synth_options: Synth) -> None:
    alias_id, _ = _alias(synth_options, "pipeline", "ClassifierFunction")
    (mapping,) = synth_options.resources("pipeline", "AWS::Lambda::EventSourceMapping").values()
    name = json.dumps(mapping["Properties"]["FunctionName"])
    assert alias_id in name and name.endswith(f':{LIVE_ALIAS}"]]}}'), name
    rule = find_one(synth_options.templates["pipeline"], "AWS::Events::Rule", "Classifier")[1]
    (target,) = rule["Properties"]["Targets"]
    assert ref_id(target["Arn"]) == alias_id


def test_the_alias_keeps_the_asynchronous_retry_and_failure_destination(
    synth_options: Synth,
) -> None:
    """Lambda applies asynchronous-invocation settings per qualifier: the Transcribe rule
    invokes the alias, so the alias needs the function's retries, age and destination."""
    function_id = find_one(
        synth_options.templates["pipeline"], "AWS::Lambda::Function", "ClassifierFunction"
    )[0]
    alias_id, _ = _alias(synth_options, "pipeline", "ClassifierFunction")
    configs = {
        # the alias's qualifier is its name, read from the alias ARN
        LIVE_ALIAS
        if alias_id in json.dumps(r["Properties"]["Qualifier"])
        else r["Properties"]["Qualifier"]: r["Properties"]
        for r in synth_options.resources("pipeline", "AWS::Lambda::EventInvokeConfig").values()
        if ref_id(r["Properties"]["FunctionName"]) == function_id
    }
    assert set(configs) == {"$LATEST", LIVE_ALIAS}
    for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig"):
        assert flatten(configs[LIVE_ALIAS][key]) == flatten(configs["$LATEST"][key]), key


def test_api_gateway_invokes_the_alias(synth_options: Synth) -> None:
    alias_id, _ = _alias(synth_options, "api", "HttpFunction")
    methods = synth_options.resources("api", "AWS::ApiGateway::Method")
    proxied = [m for m in methods.values() if m["Properties"]["Integration"]["Type"] == "AWS_PROXY"]
    assert proxied
    for method in proxied:
        assert f"<{alias_id}>" in flatten(method["Properties"]["Integration"]["Uri"])
    permissions = synth_options.resources("api", "AWS::Lambda::Permission")
    assert any(ref_id(p["Properties"]["FunctionName"]) == alias_id for p in permissions.values())


# ---- refused combinations ---------------------------------------------------------------


def test_provisioned_alone_publishes_a_version_and_warms_on_init(placeholder_bundle: str) -> None:
    config = load_config({"bundle": placeholder_bundle, "provisioned": "1"})
    assert config.versioned and not config.snapstart
    assert not load_config({"bundle": placeholder_bundle}).versioned


@pytest.mark.parametrize(
    ("context", "fragment"),
    [
        ({"snapstart": "true", "bundle": S3_BUNDLE}, "512 MiB"),
        (
            {
                "architecture": "arm64",
                "fallback": "true",
                "fallback_allowed_cidrs": "203.0.113.0/24",
            },
            "x86_64 t2.medium",
        ),
        ({"architecture": "aarch64"}, "architecture"),
        ({"provisioned": "-1"}, "provisioned"),
    ],
)
def test_impossible_combinations_are_refused(
    placeholder_bundle: str, context: dict[str, str], fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({"bundle": placeholder_bundle, **context})
    assert fragment in caught.value.message
