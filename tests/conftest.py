"""Fixtures every tier shares: repository paths, AWS isolation, and tiny model bundles."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
FIXTURES = REPO / "tests" / "fixtures"
DEMO_BUNDLE = REPO / "build" / "models" / "demo"

# No test may reach real AWS: fake credentials and a fixed region before any boto3 client
# exists. Tests that need AWS use moto (the `aws` fixture in tests/integration/conftest.py).
for _key, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "ap-northeast-2",
    "AWS_REGION": "ap-northeast-2",
    "POWERTOOLS_TRACE_DISABLED": "1",
    "POWERTOOLS_METRICS_NAMESPACE": "alertfusion-tests",
    "POWERTOOLS_SERVICE_NAME": "alertfusion-tests",
    "HF_HUB_OFFLINE": "1",
}.items():
    os.environ[_key] = _value
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny fp32 bundle made by the same code path as `model_export demo --size tiny`."""
    from model_export.demo import build_demo_bundle

    out = tmp_path_factory.mktemp("bundles") / "tiny-fp32"
    build_demo_bundle(out, size="tiny", quantize="none")
    return out


@pytest.fixture(scope="session")
def tiny_bundle_int8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny int8 bundle (static QDQ audio models, dynamic int8 text model)."""
    from model_export.demo import build_demo_bundle

    out = tmp_path_factory.mktemp("bundles") / "tiny-int8"
    build_demo_bundle(out, size="tiny", quantize="int8")
    return out
