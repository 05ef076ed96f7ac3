"""The Lambda handler (Mangum) with real-shaped API Gateway events: REST API (v1) under
its stage prefix and HTTP API (v2) with the $default and a named stage; multipart audio in
a base64 body; request ids from the event; light routes stay light."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from mangum import Mangum

from functions.api.middleware import stage_root_path
from tests.conftest import REPO
from tests.integration.api.conftest import (
    Api,
    http_event,
    invoke,
    load_event,
    rest_event,
    sample,
    with_engine,
)
from tests.integration.conftest import REGION

pytestmark = pytest.mark.integration


@pytest.fixture
def handler(make_api: Callable[..., Api], engine: Any) -> Iterator[Mangum]:
    api = make_api()
    with_engine(api.app, engine)
    yield Mangum(api.app, lifespan="off")


@pytest.mark.parametrize(
    "fixture", ["apigw-rest-predict-multipart.json", "apigw-http-predict-multipart.json"]
)
def test_fixture_events_reach_the_engine(handler: Mangum, engine: Any, fixture: str) -> None:
    """The fixtures carry a 0.3 s WAV (+ text) in a base64 multipart body: Mangum decodes it,
    the form parses, and the engine refuses the recording as too short, exactly as it
    refuses the same bytes given directly."""
    from alertfusion.errors import AudioError

    event = load_event(fixture)
    status, headers, body = invoke(handler, event)
    assert headers["x-request-id"] == event["requestContext"]["requestId"]
    with pytest.raises(AudioError) as direct:
        engine.classify(sample_audio_of(event), text="도와주세요")
    assert direct.value.code == "TOO_SHORT"
    assert status == 422
    assert body["error"]["code"] == "TOO_SHORT"
    assert body["error"]["request_id"] == event["requestContext"]["requestId"]
    assert "0.300 s" in body["error"]["message"]


def sample_audio_of(event: dict[str, Any]) -> bytes:
    """The WAV inside the fixture's multipart body."""
    import base64

    raw = base64.b64decode(event["body"])
    start = raw.index(b"RIFF")
    end = raw.index(b"\r\n------alertboundary", start)
    return raw[start:end]


@pytest.mark.parametrize(
    "make_event",
    [
        lambda m, p, **kw: rest_event(m, p, stage="prod", **kw),
        lambda m, p, **kw: http_event(m, p, stage="prod", **kw),
        lambda m, p, **kw: http_event(m, p, **kw),
    ],
    ids=["rest-prod", "http-named-stage", "http-default-stage"],
)
def test_poll_url_keeps_the_stage_prefix(handler: Mangum, make_event: Any) -> None:
    event = make_event(
        "POST",
        "/uploads",
        body=json.dumps({"content_type": "audio/wav"}).encode(),
        content_type="application/json",
    )
    status, headers, body = invoke(handler, event)
    assert status == 201, body
    host = "abc123defg.execute-api.ap-northeast-2.amazonaws.com"
    prefix = (
        ""
        if event.get("version") == "2.0" and event["requestContext"]["stage"] == "$default"
        else "/prod"
    )
    assert body["poll_url"] == f"https://{host}{prefix}/jobs/{body['job_id']}"
    # and the poll URL works through the same handler
    poll = make_event("GET", f"/jobs/{body['job_id']}")
    status, headers, job = invoke(handler, poll)
    assert status == 200 and job["status"] == "UPLOAD_PENDING"
    assert headers["retry-after"] == "2"


def test_page_links_resolve_under_the_stage(handler: Mangum) -> None:
    status, headers, page = invoke(handler, rest_event("GET", "/upload"))
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert '<base href="/prod/">' in page
    status, _, root = invoke(handler, rest_event("GET", "/"))
    assert status == 200 and '<base href="/prod/">' in root
    status, headers, script = invoke(handler, rest_event("GET", "/static/app.js"))
    assert status == 200 and "callApi" in script


def test_errors_through_mangum_keep_the_shape(handler: Mangum) -> None:
    from tests.integration.api.conftest import multipart

    data, content_type = multipart({}, {"audio_file": ("x.wav", b"<html>nope</html>", "audio/wav")})
    event = rest_event("POST", "/predict", body=data, content_type=content_type)
    status, headers, error = invoke(handler, event)
    assert status == 415
    assert error["error"]["code"] == "UNSUPPORTED_FORMAT"
    assert error["error"]["request_id"] == event["requestContext"]["requestId"]
    status, _, missing = invoke(handler, http_event("GET", "/nope"))
    assert status == 404 and missing["error"]["code"] == "NOT_FOUND"


def test_sample_recording_through_both_event_versions(handler: Mangum, engine: Any) -> None:
    from tests.integration.api.conftest import multipart

    audio = sample("ko-help-16k.wav")
    data, content_type = multipart(
        {"text_input": "도와주세요"}, {"audio_file": ("ko-help-16k.wav", audio, "audio/wav")}
    )
    expected = engine.classify(audio, text="도와주세요")
    for event in (
        rest_event("POST", "/predict", body=data, content_type=content_type),
        http_event("POST", "/predict", body=data, content_type=content_type, stage="prod"),
    ):
        status, _, body = invoke(handler, event)
        assert status == 200, body
        assert body["label"] == expected.label
        assert body["emergency_probability"] == expected.emergency_probability


@pytest.mark.parametrize(
    ("event", "path", "expected"),
    [
        ({"requestContext": {"path": "/prod/predict"}}, "/predict", ("/prod", "/prod/predict")),
        ({"requestContext": {"path": "/prod/"}}, "/", ("/prod", "/prod/")),
        ({"requestContext": {"path": "/prod"}}, "/", ("/prod", "/prod/")),
        ({"requestContext": {"path": "/predict"}}, "/predict", ("", "/predict")),
        ({"requestContext": {"path": "/a/b/jobs/X"}}, "/jobs/X", ("/a/b", "/a/b/jobs/X")),
        ({"requestContext": {}}, "/predict", ("", "/predict")),
        ({"version": "2.0", "requestContext": {"stage": "$default"}}, "/x", ("", "/x")),
        ({"version": "2.0", "requestContext": {"stage": "v1"}}, "/v1/x", ("/v1", "/v1/x")),
        ({"version": "2.0", "requestContext": {"stage": "v1"}}, "/v1x", ("", "/v1x")),
    ],
)
def test_stage_root_path(event: dict[str, Any], path: str, expected: tuple[str, str]) -> None:
    assert stage_root_path(event, path) == expected


LIGHT_CHECK = r"""
import json, sys, time
started = time.perf_counter()
from functions.api.app import handler
event = json.loads(sys.stdin.read())
out = handler(event, None)
heavy = sorted(m for m in ("numpy", "onnxruntime", "av", "soundfile", "tokenizers", "soxr",
                           "alertfusion.engine", "boto3")
               if m in sys.modules)
print(json.dumps({"status": out["statusCode"], "heavy": heavy,
                  "ms": (time.perf_counter() - started) * 1000}))
"""


def test_healthz_in_a_fresh_process_imports_nothing_heavy() -> None:
    event = http_event("GET", "/healthz")
    result = subprocess.run(
        [sys.executable, "-c", LIGHT_CHECK],
        input=json.dumps(event),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=True,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["status"] == 200
    assert report["heavy"] == []


JOBS_CHECK = r"""
import json, sys
import pytest
from moto import mock_aws

mock_aws().start()
from tests.integration.conftest import _create_resources
from tests.integration.api.conftest import http_event

_create_resources(pytest.MonkeyPatch())  # the pipeline's tables and bucket, env set
from functions.api.app import handler

created = handler(http_event("POST", "/uploads", body=b'{"content_type": "audio/wav"}',
                             content_type="application/json"), None)
job_id = json.loads(created["body"])["job_id"]
out = handler(http_event("GET", "/jobs/" + job_id), None)
heavy = sorted(m for m in ("numpy", "onnxruntime", "av", "soundfile", "tokenizers", "soxr",
                           "alertfusion.engine") if m in sys.modules)
print(json.dumps({"status": out["statusCode"], "job_id": json.loads(out["body"])["job_id"],
                  "expected": job_id, "heavy": heavy}))
"""


def test_uploads_and_jobs_in_a_fresh_process_load_no_model() -> None:
    """`/uploads` and `/jobs` need boto3 (DynamoDB, S3), nothing of the engine."""
    result = subprocess.run(
        [sys.executable, "-c", JOBS_CHECK],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["status"] == 200
    assert report["job_id"] == report["expected"]
    assert report["heavy"] == []


COLD_JOBS_CHECK = r"""
import json, sys
from functions.api.app import handler
out = handler(json.loads(sys.stdin.read()), None)
from alertfusion import aws
print(json.dumps({"status": out["statusCode"], "body": json.loads(out["body"]),
                  "clients": sorted(aws._clients),
                  "loaded": sorted(m for m in ("boto3", "s3transfer", "numpy", "onnxruntime")
                                   if m in sys.modules)}))
"""


def test_jobs_in_a_cold_process_makes_one_dynamodb_client_and_imports_no_boto3() -> None:
    """What keeps the cold `/jobs` short (docs/DECISIONS.md, Cold start): a DynamoDB client from
    botocore, no S3 client, and neither boto3 nor s3transfer imported. moto runs as a
    server in this process, so the child imports nothing of moto's (or its boto3)."""
    import os

    import boto3
    from moto.server import ThreadedMotoServer

    from alertfusion.jobs import JobStore, create_jobs_table
    from alertfusion.keys import new_job_id

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        ddb = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        ).client("dynamodb", endpoint_url=endpoint)
        create_jobs_table(ddb, "cold-jobs")
        job_id = new_job_id()
        JobStore("cold-jobs", ddb).create_pending(job_id, object_key=f"uploads/{job_id}.wav")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "API_KEY"))}
        env.update(
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION=REGION,
            AWS_ENDPOINT_URL=endpoint,
            AUDIO_BUCKET="cold-audio",
            JOBS_TABLE="cold-jobs",
            EVENT_BUS_NAME="cold-bus",
            WORK_QUEUE_URL=f"{endpoint}/123456789012/cold-work",
            POWERTOOLS_LOG_LEVEL="WARNING",
        )
        result = subprocess.run(
            [sys.executable, "-c", COLD_JOBS_CHECK],
            input=json.dumps(http_event("GET", f"/jobs/{job_id}")),
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=120,
            check=False,
        )
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["status"] == 200, report
    assert report["body"]["job_id"] == job_id
    assert report["body"]["status"] == "UPLOAD_PENDING"
    assert report["clients"] == ["dynamodb"]
    assert report["loaded"] == []


def test_body_over_the_limit_through_the_gateway_is_413(handler: Mangum) -> None:
    """A REST event has no Content-Length: the limit holds while reading the body."""
    from tests.integration.api.conftest import multipart

    audio = b"RIFF" + bytes(4 * 1024 * 1024)
    data, content_type = multipart({}, {"audio_file": ("big.wav", audio, "audio/wav")})
    event = rest_event("POST", "/predict", body=data, content_type=content_type)
    assert "content-length" not in {k.lower() for k in event["headers"]}
    status, _, body = invoke(handler, event)
    assert status == 413
    assert body["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert "POST /uploads" in body["error"]["message"]


def test_body_over_the_limit_in_an_http_api_event_is_413_from_its_length(
    handler: Mangum,
) -> None:
    """An HTTP API (v2) event carries the client's Content-Length: refused before reading."""
    from tests.integration.api.conftest import multipart

    audio = b"RIFF" + bytes(4 * 1024 * 1024)
    data, content_type = multipart({}, {"audio_file": ("big.wav", audio, "audio/wav")})
    event = http_event("POST", "/predict", body=data, content_type=content_type)
    assert event["headers"]["content-length"] == str(len(data))
    status, headers, body = invoke(handler, event)
    assert status == 413
    assert body["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert body["error"]["message"].startswith(f"the request body is {len(data)} bytes")
    assert "POST /uploads" in body["error"]["message"]
    assert body["error"]["request_id"] == headers["x-request-id"]
