"""Browser origins of the bucket's CORS rule: the configured ones and the page's own."""

from __future__ import annotations

import re

import pytest

from infra.config import InfraConfig, load_config
from infra.origins import execute_api_origins, fallback_origins, upload_origins

pytestmark = pytest.mark.infra


def _config(placeholder_bundle: str, **context: str) -> InfraConfig:
    return load_config({"bundle": placeholder_bundle, **context})


def _matches(pattern: str, origin: str) -> bool:
    """S3's CORS match: the origin equals the pattern, its one `*` standing for anything."""
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), origin) is not None


@pytest.mark.parametrize(
    ("region", "api_origin", "fallback_origin"),
    [
        (
            "ap-northeast-2",
            "https://a1b2c3d4e5.execute-api.ap-northeast-2.amazonaws.com",
            "http://ec2-203-0-113-7.ap-northeast-2.compute.amazonaws.com:8000",
        ),
        (
            "us-east-1",
            "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
            "http://ec2-203-0-113-7.compute-1.amazonaws.com:8000",
        ),
        (
            "cn-north-1",
            "https://a1b2c3d4e5.execute-api.cn-north-1.amazonaws.com.cn",
            "http://ec2-203-0-113-7.cn-north-1.compute.amazonaws.com.cn:8000",
        ),
    ],
)
def test_patterns_match_the_pages_real_origins_in_each_partition(
    region: str, api_origin: str, fallback_origin: str
) -> None:
    assert execute_api_origins(region).count("*") == 1  # S3 allows one wildcard per origin
    assert _matches(execute_api_origins(region), api_origin)
    assert _matches(fallback_origins(region, 8000), fallback_origin)
    assert not _matches(fallback_origins(region, 8000), fallback_origin.replace("8000", "8080"))
    assert not _matches(execute_api_origins(region), "https://evil.example.com")


def test_configured_origins_come_first_then_the_pages_own(placeholder_bundle: str) -> None:
    config = _config(placeholder_bundle, cors_allowed_origins="https://app.example.com")
    assert upload_origins(config) == [
        "https://app.example.com",
        "https://*.execute-api.ap-northeast-2.amazonaws.com",
    ]
    with_fallback = _config(
        placeholder_bundle,
        fallback="true",
        fallback_allowed_cidrs="203.0.113.0/24",
        fallback_port="9000",
    )
    assert upload_origins(with_fallback) == [
        "https://*.execute-api.ap-northeast-2.amazonaws.com",
        "http://*.ap-northeast-2.compute.amazonaws.com:9000",
    ]


def test_any_origin_is_just_the_wildcard(placeholder_bundle: str) -> None:
    config = _config(placeholder_bundle, cors_allowed_origins="https://a.example.com,*")
    assert upload_origins(config) == ["*"]
