"""Fixtures of the API tests: the app on moto (the `aws` fixture of tests/integration) with
the real engine on the tiny bundle, a TestClient, and API Gateway events for Mangum."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from functions.api.app import create_app
from functions.api.deps import get_classifier_provider, reset_pipeline
from functions.api.settings import ApiSettings
from tests.conftest import FIXTURES, SAMPLES
from tests.integration.api.live_server import LiveServer
from tests.integration.conftest import BUCKET, AwsEnv, LambdaContext

EVENTS = FIXTURES / "events"
API_KEY = "test-key-0123456789abcdef"


def settings(**overrides: Any) -> ApiSettings:
    """ApiSettings from keyword arguments (field names), nothing from the environment."""
    return ApiSettings.model_validate({name.upper(): value for name, value in overrides.items()})


@pytest.fixture(scope="session")
def engine(tiny_bundle: Path) -> Any:
    """The real engine on the tiny fp32 bundle (one per test session)."""
    from alertfusion.engine import Engine

    return Engine.from_bundle(tiny_bundle)


def with_engine(app: FastAPI, engine: Any) -> FastAPI:
    app.dependency_overrides[get_classifier_provider] = lambda: lambda: engine
    return app


@dataclass
class Api:
    """The app on moto, and a client for it."""

    app: FastAPI
    client: TestClient
    aws: AwsEnv

    def put(self, key: str, data: bytes, content_type: str = "audio/wav") -> None:
        self.aws.put(key, data, content_type)


@pytest.fixture
def make_api(aws: AwsEnv) -> Iterator[Callable[..., Api]]:
    """`make_api(engine=None, **settings)`: an app with those ApiSettings on the moto
    resources of `aws`; without an engine the classifying routes fail if they get far
    enough to need one."""
    reset_pipeline()
    clients: list[TestClient] = []

    def make(engine: Any = None, **overrides: Any) -> Api:
        app = create_app(settings(**overrides))
        if engine is not None:
            with_engine(app, engine)
        client = TestClient(app, raise_server_exceptions=False)
        clients.append(client)
        return Api(app=app, client=client, aws=aws)

    yield make
    for client in clients:
        client.close()
    reset_pipeline()


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    """The app with default settings (no API key check) and no engine."""
    return make_api()


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def sample_transcripts() -> dict[str, str]:
    data: dict[str, str] = json.loads((SAMPLES / "transcripts.json").read_text("utf-8"))
    return data


def load_event(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / name).read_text(encoding="utf-8"))
    return data


def multipart(
    fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]
) -> tuple[bytes, str]:
    """A multipart/form-data body (as API Gateway would carry it) and its Content-Type."""
    boundary = "----alertfusionTestBoundary0123456789"
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode("utf-8")
            + b"\r\n"
        )
    for name, (filename, data, content_type) in files.items():
        parts.append(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def rest_event(
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    content_type: str | None = None,
    stage: str = "prod",
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The REST (v1) fixture event, re-aimed at `method path` with `body` (base64)."""
    event = copy.deepcopy(load_event("apigw-rest-predict-multipart.json"))
    event["httpMethod"] = method
    event["path"] = path
    event["pathParameters"] = {"proxy": path.lstrip("/")} if path != "/" else None
    event["resource"] = "/{proxy+}" if path != "/" else "/"
    ctx = event["requestContext"]
    ctx["httpMethod"] = method
    ctx["stage"] = stage
    ctx["path"] = f"/{stage}{path}"
    ctx["resourcePath"] = event["resource"]
    hdrs = {k: v for k, v in event["headers"].items() if k.lower() != "content-type"}
    hdrs.update(headers or {})
    if content_type:
        hdrs["Content-Type"] = content_type
    event["headers"] = hdrs
    event["multiValueHeaders"] = {k: [v] for k, v in hdrs.items()}
    if body is None:
        event["body"] = None
        event["isBase64Encoded"] = False
    else:
        event["body"] = base64.b64encode(body).decode("ascii")
        event["isBase64Encoded"] = True
    return event


def http_event(
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    content_type: str | None = None,
    stage: str = "$default",
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The HTTP API (v2) fixture event, re-aimed at `method path` (under /{stage} when the
    stage is named, as API Gateway sends it)."""
    event = copy.deepcopy(load_event("apigw-http-predict-multipart.json"))
    full = path if stage == "$default" else f"/{stage}{path}"
    event["rawPath"] = full
    event["routeKey"] = "$default"
    ctx = event["requestContext"]
    ctx["http"]["method"] = method
    ctx["http"]["path"] = full
    ctx["routeKey"] = "$default"
    ctx["stage"] = stage
    hdrs = {
        k: v for k, v in event["headers"].items() if k not in ("content-type", "content-length")
    }
    hdrs.update({k.lower(): v for k, v in (headers or {}).items()})
    if content_type:
        hdrs["content-type"] = content_type
    if body is None:
        event.pop("body", None)
        event["isBase64Encoded"] = False
    else:
        hdrs["content-length"] = str(len(body))
        event["body"] = base64.b64encode(body).decode("ascii")
        event["isBase64Encoded"] = True
    event["headers"] = hdrs
    return event


def invoke(handler: Any, event: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    """(status, headers, JSON body or text) of a Mangum invocation."""
    out = handler(event, LambdaContext())
    body = out.get("body") or ""
    if out.get("isBase64Encoded"):
        body = base64.b64decode(body).decode("utf-8")
    headers = {k.lower(): v for k, v in (out.get("headers") or {}).items()}
    if headers.get("content-type", "").startswith("application/json"):
        return out["statusCode"], headers, json.loads(body)
    return out["statusCode"], headers, body


__all__ = ["API_KEY", "BUCKET", "LiveServer"]
