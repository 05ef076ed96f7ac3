"""The EC2 fallback: own VPC without NAT, IMDSv2, encrypted gp3, SSM not SSH, ingress from the
configured CIDRs only, the same image under systemd."""

from __future__ import annotations

import re
from typing import Any

import pytest

from infra.constructs.fallback_instance import INSTANCE_TYPE
from tests.infra.conftest import CORS_ORIGIN, FALLBACK_CIDRS, Synth
from tests.infra.templates import flatten

pytestmark = pytest.mark.infra

API_PORT = 8000
_ENV_FILE = re.compile(
    r"cat > /etc/alertfusion/app\.env <<'ALERTFUSION_ENV'\n(.*?)\nALERTFUSION_ENV", re.S
)


def _instance(synth: Synth) -> dict[str, Any]:
    (instance,) = synth.resources("fallback", "AWS::EC2::Instance").values()
    return dict(instance["Properties"])


def _ingress_rules(synth: Synth) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for group in synth.resources("fallback", "AWS::EC2::SecurityGroup").values():
        rules += group["Properties"].get("SecurityGroupIngress", [])
    rules += [
        r["Properties"]
        for r in synth.resources("fallback", "AWS::EC2::SecurityGroupIngress").values()
    ]
    return rules


def test_instance_is_a_t2_medium_on_amazon_linux_2023(synth: Synth) -> None:
    props = _instance(synth)
    assert props["InstanceType"] == INSTANCE_TYPE == "t2.medium"
    parameter = synth.templates["fallback"]["Parameters"][props["ImageId"]["Ref"]]
    assert parameter["Default"].startswith("/aws/service/ami-amazon-linux-latest/al2023-ami-")
    assert parameter["Default"].endswith("-x86_64")


def test_imdsv2_only_with_a_hop_for_the_container(synth: Synth) -> None:
    assert _instance(synth)["MetadataOptions"] == {
        "HttpEndpoint": "enabled",
        "HttpTokens": "required",
        "HttpPutResponseHopLimit": 2,
    }


def test_root_volume_is_encrypted_gp3_and_monitoring_is_detailed(synth: Synth) -> None:
    props = _instance(synth)
    (device,) = props["BlockDeviceMappings"]
    assert device["Ebs"]["Encrypted"] is True
    assert device["Ebs"]["VolumeType"] == "gp3"
    assert props["Monitoring"] is True


def test_no_ssh_no_key_pair_and_only_the_allowed_cidrs_on_the_api_port(synth: Synth) -> None:
    props = _instance(synth)
    assert "KeyName" not in props
    rules = _ingress_rules(synth)
    assert sorted(r["CidrIp"] for r in rules) == sorted(FALLBACK_CIDRS)
    for rule in rules:
        assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", API_PORT, API_PORT)
        assert not rule["FromPort"] <= 22 <= rule["ToPort"]
        assert rule["CidrIp"] != "0.0.0.0/0"


def test_own_vpc_with_a_public_subnet_and_no_nat(synth: Synth) -> None:
    assert len(synth.resources("fallback", "AWS::EC2::VPC")) == 1
    assert not synth.resources("fallback", "AWS::EC2::NatGateway")
    subnets = synth.resources("fallback", "AWS::EC2::Subnet")
    assert len(subnets) == 1
    assert all(s["Properties"]["MapPublicIpOnLaunch"] for s in subnets.values())
    assert synth.resources("fallback", "AWS::EC2::InternetGateway")
    assert synth.resources("fallback", "AWS::EC2::FlowLog")


def test_ssm_session_manager_replaces_ssh(synth: Synth) -> None:
    (profile,) = synth.resources("fallback", "AWS::IAM::InstanceProfile").values()
    role_id = profile["Properties"]["Roles"][0]["Ref"]
    role = synth.templates["fallback"]["Resources"][role_id]["Properties"]
    managed = [flatten(arn) for arn in role["ManagedPolicyArns"]]
    assert managed == ["arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedInstanceCore"]


def test_user_data_runs_the_image_with_uvicorn_under_systemd(synth: Synth) -> None:
    user_data = flatten(_instance(synth)["UserData"])
    for expected in (
        "dnf install -y docker",
        "systemctl enable --now docker",
        "aws ecr get-login-password",
        "docker pull",
        "aws secretsmanager get-secret-value",
        "Restart=on-failure",
        "WantedBy=multi-user.target",
        "systemctl enable --now alertfusion.service",
        "--read-only",
        "--tmpfs /tmp:",
        "--log-driver awslogs",
        f"--publish {API_PORT}:{API_PORT}",
        "--entrypoint python",
        "-m uvicorn functions.api.app:app",
        f"--host 0.0.0.0 --port {API_PORT}",
        "--http functions.api.server:ApiH11Protocol",
        f"PUBLIC_BASE_URL=http://%s:{API_PORT}",
        "AUDIO_BUCKET=<import:alertfusion-test-pipeline-AudioBucketName>",
        "JOBS_TABLE=<import:alertfusion-test-pipeline-JobsTableName>",
    ):
        assert expected in user_data, expected
    # the key reaches the container through a root-only runtime file, not the unit or the env
    assert "umask 077" in user_data and "API_KEY=%s" in user_data


def test_outputs_give_the_url_and_the_session_command(synth: Synth) -> None:
    outputs = synth.templates["fallback"]["Outputs"]
    url = flatten(outputs["FallbackUrl"]["Value"])
    assert url.startswith("http://") and url.endswith(f":{API_PORT}")
    assert flatten(outputs["SessionCommand"]["Value"]).startswith("aws ssm start-session --target")


def _app_env(synth: Synth) -> dict[str, str]:
    """The container's environment file, as the user data writes it."""
    user_data = flatten(_instance(synth)["UserData"])
    match = _ENV_FILE.search(user_data)
    assert match, user_data
    return dict(line.split("=", 1) for line in match.group(1).splitlines())


def test_the_app_checks_the_key_itself_with_the_same_settings_as_the_api(synth: Synth) -> None:
    """No gateway in front: API_KEY_REQUIRED=true, and API_KEY arrives from the secret; the
    rest of the API's settings are those of the API function (one contract)."""
    from functions.api.settings import ApiSettings

    env = _app_env(synth)
    assert "API_KEY" not in env  # never in the world-readable env file
    assert env["API_KEY_REQUIRED"] == "true"
    api_function = next(
        r["Properties"]["Environment"]["Variables"]
        for lid, r in synth.templates["api"]["Resources"].items()
        if r["Type"] == "AWS::Lambda::Function" and lid.startswith("HttpFunction")
    )
    for variable in ("CORS_ALLOW_ORIGINS", "MAX_BODY_BYTES", "PREDICT_S3_PREFIXES"):
        assert env[variable] == api_function[variable], variable
    assert env["CORS_ALLOW_ORIGINS"] == CORS_ORIGIN
    settings = ApiSettings.model_validate({**env, "API_KEY": "k" * 40})
    assert settings.checks_api_key is True
    # the secret file the unit adds to the container carries the key
    assert "--env-file /run/alertfusion/secret.env" in flatten(_instance(synth)["UserData"])
