"""Schemathesis against the app's own OpenAPI schema (in process, moto behind it, the
classifying routes served by the tiny bundle): no 5xx, and every response matches what
the schema says (status code, content type, body schema, headers). Bounded: a fixed
number of examples per operation and a per-example deadline."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from functions.api.app import create_app
from functions.api.deps import reset_pipeline
from tests.integration.api.conftest import settings as api_settings
from tests.integration.api.conftest import with_engine
from tests.integration.conftest import AwsEnv

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


# The schema is loaded from an app made here (building the schema needs neither moto nor the
# engine); the fixture below wires both in for each operation's test. (schemathesis'
# `from_fixture` loader reads a pytest-internal attribute that pytest 9 no longer has.)
APP = create_app(api_settings())
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(autouse=True)
def _wired(aws: AwsEnv, engine: Any) -> Iterator[None]:
    reset_pipeline()
    with_engine(APP, engine)
    yield
    APP.dependency_overrides.clear()
    reset_pipeline()


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
)
def test_api_conforms_to_its_schema(case: Any) -> None:
    case.call_and_validate(checks=CHECKS)
