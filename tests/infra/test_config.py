"""Context settings: defaults, validation, and messages that say how to fix the input."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from alertfusion.errors import ConfigError, ReasonCode
from infra.config import (
    S3_BUNDLE_EPHEMERAL_MIB,
    SETTINGS,
    InfraConfig,
    load_config,
    powertools_version_from_requirements,
)

pytestmark = pytest.mark.infra


def test_defaults(placeholder_bundle: str) -> None:
    config = load_config({"bundle": placeholder_bundle})
    assert config.stage == "prod" and config.region == "ap-northeast-2"
    assert config.fallback is False and config.fallback_allowed_cidrs == []
    assert config.transcribe_policy == "always" and config.transcribe_job_prefix == "alert-"
    assert config.removal_policy == "retain"
    assert config.powertools_version == powertools_version_from_requirements()
    assert config.stack_name("api") == "alertfusion-prod-api"


def test_the_default_bundle_is_the_demo_bundle_made_by_make_setup() -> None:
    assert InfraConfig.model_fields["bundle"].default == "build/models/demo"


def test_cli_strings_are_parsed(placeholder_bundle: str) -> None:
    config = load_config(
        {
            "bundle": placeholder_bundle,
            "fallback": "true",
            "fallback_allowed_cidrs": "203.0.113.0/24, 198.51.100.7/32",
            "classifier_memory_mb": "4096",
            "cors_allowed_origins": "https://a.example.com,http://localhost:3000",
            "alarm_email": "",
        }
    )
    assert config.fallback is True
    assert config.fallback_allowed_cidrs == ["203.0.113.0/24", "198.51.100.7/32"]
    assert config.classifier_memory_mb == 4096
    assert config.cors_allowed_origins == ["https://a.example.com", "http://localhost:3000"]
    assert config.alarm_email is None
    assert load_config({"bundle": placeholder_bundle, "fallback": "false"}).fallback is False


def _error(context: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(context)
    assert info.value.code is ReasonCode.CONFIG_INVALID
    return info.value.message


def test_fallback_without_cidrs_is_refused_with_how_to_set_them(placeholder_bundle: str) -> None:
    message = _error({"bundle": placeholder_bundle, "fallback": "true"})
    assert "fallback_allowed_cidrs" in message
    assert "-c fallback_allowed_cidrs=203.0.113.0/24" in message
    assert "cdk.json" in message


def test_app_refuses_a_fallback_without_cidrs_before_building_anything(
    placeholder_bundle: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from aws_cdk import App

    import infra.app

    built: list[object] = []
    monkeypatch.setattr(infra.app, "build_core_layer", lambda *a: built.append(a))
    app = App(context={"bundle": placeholder_bundle, "fallback": "true"}, outdir=str(tmp_path))
    assert infra.app.main(app) == 2
    assert "-c fallback_allowed_cidrs=" in capsys.readouterr().err
    assert built == []
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize(
    ("cidrs", "fragment"),
    [
        ("0.0.0.0/0", "whole internet"),
        ("203.0.113.0/33", "not an IPv4 CIDR"),
        ("203.0.113.7/24", "not an IPv4 CIDR"),  # host bits set: almost surely a typo
        ("2001:db8::/32", "not an IPv4 CIDR"),
    ],
)
def test_bad_cidrs_are_refused(placeholder_bundle: str, cidrs: str, fragment: str) -> None:
    message = _error(
        {"bundle": placeholder_bundle, "fallback": "true", "fallback_allowed_cidrs": cidrs}
    )
    assert fragment in message


def test_an_unknown_setting_is_refused_with_a_suggestion(placeholder_bundle: str) -> None:
    message = _error({"bundle": placeholder_bundle, "fallback_allowed_cidr": "203.0.113.0/24"})
    assert "fallback_allowed_cidr (did you mean fallback_allowed_cidrs?)" in message


def test_cdk_keys_and_feature_flags_are_not_settings(placeholder_bundle: str) -> None:
    context = {
        "bundle": placeholder_bundle,
        "@aws-cdk/core:enablePartitionLiterals": True,
        "aws:cdk:enable-path-metadata": True,
        "acknowledged-issue-numbers": [1],
    }
    assert load_config(context).bundle == placeholder_bundle


@pytest.mark.parametrize(
    ("context", "fragment"),
    [
        ({"bundle": "/etc"}, "outside the repository"),
        ({"bundle": "samples"}, "has no manifest.json"),
        ({"bundle": "s3://Bad_Bucket/x"}, "not an s3://bucket/key URI"),
        ({"api_timeout_seconds": 30}, "api_timeout_seconds"),
        ({"classifier_memory_mb": 512}, "classifier_memory_mb"),
        ({"log_retention_days": 10}, "log_retention_days must be one of"),
        ({"transcribe_policy": "sometimes"}, "transcribe_policy"),
        ({"transcribe_job_prefix": "bad prefix"}, "transcribe_job_prefix"),
        ({"stage": "Prod"}, "stage"),
        ({"alarm_email": "not-an-address"}, "alarm_email"),
        ({"cors_allowed_origins": "app.example.com"}, "is not an origin"),
        ({"min_audio_seconds": 700}, "min_audio_seconds must be below"),
        ({"removal_policy": "snapshot"}, "removal_policy"),
    ],
)
def test_invalid_settings_name_the_key(
    placeholder_bundle: str, context: dict[str, object], fragment: str
) -> None:
    assert fragment in _error({"bundle": placeholder_bundle, **context})


def test_an_s3_bundle_needs_no_directory() -> None:
    config = load_config({"bundle": "s3://models-example/alertfusion/v1/"})
    assert config.bundle_is_s3
    assert config.bundle_s3_parts == ("models-example", "alertfusion/v1")


NAMED = "infant-cry=s3://models-example/infant-cry/v2,dog-bark=s3://other-models/dog-bark"


def test_named_bundles_are_s3_uris_each_with_room_in_tmp(placeholder_bundle: str) -> None:
    baked = load_config({"bundle": placeholder_bundle, "bundles": NAMED})
    assert baked.named_bundles == {
        "infant-cry": "s3://models-example/infant-cry/v2",
        "dog-bark": "s3://other-models/dog-bark",
    }
    assert baked.s3_bundles == list(baked.named_bundles.values())
    assert baked.bundle_ephemeral_mib == 2 * S3_BUNDLE_EPHEMERAL_MIB
    s3 = load_config({"bundle": "s3://models-example/alertfusion/v1", "bundles": NAMED})
    assert s3.s3_bundles[0] == "s3://models-example/alertfusion/v1"
    assert s3.bundle_ephemeral_mib == 3 * S3_BUNDLE_EPHEMERAL_MIB
    # cdk.json may hold a real list
    listed = load_config({"bundle": placeholder_bundle, "bundles": NAMED.split(",")})
    assert listed.named_bundles == baked.named_bundles
    assert load_config({"bundle": placeholder_bundle}).bundle_ephemeral_mib is None


@pytest.mark.parametrize(
    ("bundles", "fragment"),
    [
        ("infant-cry", "is not NAME=s3://bucket/key"),
        ("Infant=s3://models-example/x", "is not NAME=s3://bucket/key"),
        ("default=s3://models-example/x", "not 'default'"),
        ("a=s3://models-example/x,a=s3://models-example/y", "'a' is named twice"),
        ("cry=build/models/infant-cry", "named bundles are read from S3"),
        ("cry=s3://models-example", "is not an s3://bucket/key URI"),
        (",".join(f"b{i}=s3://models-example/b{i}" for i in range(6)), "more than Lambda's"),
    ],
)
def test_named_bundles_that_cannot_be_served_are_refused(
    placeholder_bundle: str, bundles: str, fragment: str
) -> None:
    assert fragment in _error({"bundle": placeholder_bundle, "bundles": bundles})


def test_snapstart_refuses_named_bundles(placeholder_bundle: str) -> None:
    message = _error(
        {"bundle": placeholder_bundle, "bundles": NAMED, "snapstart": "true", "provisioned": "0"}
    )
    assert "snapstart=true with named bundles" in message


def test_settings_the_functions_read_default_to_the_functions_own_defaults() -> None:
    """A context setting the stack passes to the functions has the default they use without
    it (both come from the core library): a second default that drifts fails here."""
    from alertfusion.settings import PipelineSettings

    app = PipelineSettings.model_json_schema(by_alias=False)["properties"]
    infra = InfraConfig.model_json_schema()["properties"]
    shared = set(InfraConfig.model_fields) & set(PipelineSettings.model_fields)
    assert {"min_audio_seconds", "max_audio_seconds", "transcribe_job_prefix"} <= shared
    for name in shared:
        assert InfraConfig.model_fields[name].get_default(
            call_default_factory=True
        ) == PipelineSettings.model_fields[name].get_default(call_default_factory=True), name
        if "pattern" in app[name] and "pattern" in infra[name]:
            assert app[name]["pattern"] == infra[name]["pattern"], name


def test_every_setting_is_documented() -> None:
    for name in SETTINGS:
        assert InfraConfig.model_fields[name].description, name


S3 = "s3://models-example/alertfusion/v1"


def test_end_users_are_off_by_default_and_oidc_needs_its_issuer() -> None:
    assert load_config({"bundle": S3}).auth == "api_key"
    assert load_config({"bundle": S3, "auth": "cognito"}).cognito_self_sign_up is True
    config = load_config(
        {
            "bundle": S3,
            "auth": "oidc",
            "oidc_issuer": "https://login.example.com/tenant",
            "oidc_audience": "app-1, app-2",
        }
    )
    assert config.oidc_audience == ["app-1", "app-2"]
    message = _error({"bundle": S3, "auth": "oidc"})
    assert "-c oidc_issuer=" in message and "oidc_audience" in message


@pytest.mark.parametrize(
    ("context", "fragment"),
    [
        ({"auth": "saml"}, "auth"),
        (
            {"auth": "oidc", "oidc_issuer": "http://login.example.com", "oidc_audience": "a"},
            "is not an https URL",
        ),
        ({"oidc_issuer": "https://login.example.com"}, "need auth=oidc"),
        ({"auth": "cognito", "oidc_audience": "a"}, "need auth=oidc"),
        ({"quota_uploads_per_hour": "300"}, "quota_uploads_per_hour is above"),
        ({"quota_predictions_per_day": "0"}, "quota_predictions_per_day"),
    ],
)
def test_invalid_auth_settings_name_the_key(context: dict[str, object], fragment: str) -> None:
    assert fragment in _error({"bundle": S3, **context})


def test_the_quota_defaults_are_the_apis_own() -> None:
    from functions.api.settings import ApiSettings

    for name in (
        "quota_uploads_per_hour",
        "quota_uploads_per_day",
        "quota_predictions_per_hour",
        "quota_predictions_per_day",
    ):
        assert InfraConfig.model_fields[name].default == ApiSettings.model_fields[name].default
