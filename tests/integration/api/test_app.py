"""The app's shell: health, the error shape and request ids, the API key, CORS, the body
limit, and the OpenAPI document."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from functions.api.app import create_app
from functions.api.deps import get_classifier_provider
from functions.api.middleware import ContentLengthLimit
from functions.api.settings import DEFAULT_MAX_BODY_BYTES, ApiSettings
from tests.bundle_edits import copy_bundle, strict_int8, with_fallback
from tests.conftest import SAMPLES
from tests.corpus.bad_audio import pcm16, wav_bytes
from tests.integration.api.conftest import API_KEY, Api, LiveServer, multipart, settings

pytestmark = pytest.mark.integration


def error_of(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "request_id"}, body
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    error: dict[str, Any] = body["error"]
    return error


# -- health ---------------------------------------------------------------------------------


def test_healthz_answers_without_key_or_aws() -> None:
    client = TestClient(create_app(settings(api_key=API_KEY)))
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_readyz_is_503_with_the_reason_when_the_bundle_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from alertfusion.engine import reset_engine
    from alertfusion.settings import engine_settings

    monkeypatch.setenv("MODEL_BUNDLE", str(tmp_path / "no-bundle-here"))
    engine_settings.cache_clear()
    reset_engine()
    try:
        response = TestClient(create_app(settings())).get("/readyz")
    finally:
        engine_settings.cache_clear()
        reset_engine()
    assert response.status_code == 503
    assert error_of(response)["code"] == "BUNDLE_NOT_FOUND"


def test_readyz_reports_the_loaded_bundle(make_api: Callable[..., Api], engine: Any) -> None:
    response = make_api(engine=engine).client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["bundle_version"] == engine.manifest.bundle_version
    assert body["trained"] is False
    assert engine.loaded  # /readyz created the sessions


def _real_engine_api(monkeypatch: pytest.MonkeyPatch, bundle: Any) -> TestClient:
    """The API on the process-wide engine (get_engine, with its self-check) for `bundle`."""
    from alertfusion.engine import reset_engine
    from alertfusion.settings import engine_settings

    monkeypatch.setenv("MODEL_BUNDLE", str(bundle))
    engine_settings.cache_clear()
    reset_engine()
    return TestClient(create_app(settings()))


@pytest.fixture
def _forget_engine() -> Any:
    yield
    from alertfusion.engine import reset_engine
    from alertfusion.settings import engine_settings

    engine_settings.cache_clear()
    reset_engine()


@pytest.mark.usefixtures("_forget_engine")
def test_readyz_reports_the_selfcheck_on_this_cpu(
    monkeypatch: pytest.MonkeyPatch, tiny_bundle_int8: Any
) -> None:
    from alertfusion.selfcheck import cpu_info

    response = _real_engine_api(monkeypatch, tiny_bundle_int8).get("/readyz")
    assert response.status_code == 200, response.text
    check = response.json()["selfcheck"]
    assert check["status"] == "passed" and check["fallback"] == []
    assert cpu_info().model in check["cpu"] and check["ms"] > 0


@pytest.mark.usefixtures("_forget_engine")
def test_a_failed_selfcheck_makes_readyz_and_predict_503(
    monkeypatch: pytest.MonkeyPatch, tiny_bundle_int8: Any, tmp_path: Any
) -> None:
    bundle = copy_bundle(tiny_bundle_int8, tmp_path)
    strict_int8(bundle)
    client = _real_engine_api(monkeypatch, bundle)
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert error_of(ready)["code"] == "SELFCHECK_FAILED"
    wav = (SAMPLES / "ko-help-16k.wav").read_bytes()
    predict = client.post("/predict", files={"audio_file": ("a.wav", wav, "audio/wav")})
    assert predict.status_code == 503
    assert error_of(predict)["code"] == "SELFCHECK_FAILED"


@pytest.mark.usefixtures("_forget_engine")
def test_readyz_names_the_models_served_by_their_fp32_fallback(
    monkeypatch: pytest.MonkeyPatch, tiny_bundle_int8: Any, tiny_bundle: Any, tmp_path: Any
) -> None:
    bundle = with_fallback(tiny_bundle_int8, tiny_bundle, tmp_path)
    strict_int8(bundle)
    body = _real_engine_api(monkeypatch, bundle).get("/readyz").json()
    assert body["selfcheck"]["status"] == "fallback"
    assert body["selfcheck"]["fallback"] == ["audio_binary", "audio_multiclass"]
    assert body["quantization"] == {
        "audio_binary": "none",
        "audio_multiclass": "none",
        "text": "int8_dynamic",
    }


# -- error shape, routing, request ids --------------------------------------------------------


def test_unknown_route_is_404_in_the_error_shape(api: Api) -> None:
    response = api.client.get("/nothing-here")
    assert response.status_code == 404
    assert error_of(response)["code"] == "NOT_FOUND"


def test_wrong_method_is_405_with_allow(api: Api) -> None:
    response = api.client.delete("/uploads")
    assert response.status_code == 405
    assert error_of(response)["code"] == "METHOD_NOT_ALLOWED"
    assert "POST" in response.headers["allow"]


def test_request_id_is_generated_or_taken_from_a_sane_header(api: Api) -> None:
    first = api.client.get("/healthz").headers["x-request-id"]
    second = api.client.get("/healthz").headers["x-request-id"]
    assert first != second and len(first) == 36
    given = api.client.get("/healthz", headers={"x-request-id": "client-trace-0042"})
    assert given.headers["x-request-id"] == "client-trace-0042"
    hostile = api.client.get("/healthz", headers={"x-request-id": "x\tinjected: yes"})
    assert hostile.headers["x-request-id"] != "x\tinjected: yes"


def test_unexpected_exception_is_500_internal_without_details(api: Api) -> None:
    @api.app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret detail /etc/passwd")

    response = api.client.get("/boom")
    assert response.status_code == 500
    error = error_of(response)
    assert error["code"] == "INTERNAL"
    assert "secret" not in error["message"]


def test_validation_errors_are_422_invalid_input(api: Api) -> None:
    response = api.client.post("/uploads", json={"content_type": 42, "unknown": 1})
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "INVALID_INPUT"
    assert "content_type" in error["message"]


# -- API key --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "method"),
    [("/uploads", "post"), ("/predict", "post"), ("/predict_s3", "post"), ("/jobs/x", "get")],
)
def test_protected_routes_need_the_key(
    make_api: Callable[..., Api], path: str, method: str
) -> None:
    client = make_api(api_key=API_KEY).client
    for headers in ({}, {"x-api-key": "wrong-key-0123456789abcdef"}, {"x-api-key": ""}):
        response = client.request(method, path, headers=headers)
        assert response.status_code == 401, (path, headers)
        assert error_of(response)["code"] == "UNAUTHORIZED"


def test_the_right_key_passes_and_open_routes_stay_open(make_api: Callable[..., Api]) -> None:
    client = make_api(api_key=API_KEY).client
    ok = client.post("/uploads", json={"content_type": "audio/wav"}, headers={"x-api-key": API_KEY})
    assert ok.status_code == 201
    assert client.get("/healthz").status_code == 200
    assert client.get("/upload").status_code == 200


def test_key_not_checked_behind_the_gateway(make_api: Callable[..., Api]) -> None:
    client = make_api(api_key=API_KEY, api_key_required=False).client
    assert client.post("/uploads", json={"content_type": "audio/wav"}).status_code == 201
    client = make_api().client  # no key configured
    assert client.post("/uploads", json={"content_type": "audio/wav"}).status_code == 201


def test_key_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import functions.api.deps as deps

    calls: list[tuple[bytes, bytes]] = []
    real = deps.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(deps.hmac, "compare_digest", spy)
    client = TestClient(create_app(settings(api_key=API_KEY)))
    client.post("/predict", headers={"x-api-key": "nope"})
    assert calls == [(b"nope", API_KEY.encode())]


def test_short_keys_are_refused_at_start() -> None:
    with pytest.raises(ValueError, match="API_KEY"):
        settings(api_key="short")


# -- CORS -----------------------------------------------------------------------------------


def test_cors_preflight_for_a_configured_origin(make_api: Callable[..., Api]) -> None:
    client = make_api(cors_allow_origins="https://app.example.org").client
    response = client.options(
        "/predict",
        headers={
            "Origin": "https://app.example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example.org"
    assert "x-api-key" in response.headers["access-control-allow-headers"].lower()
    other = client.get("/healthz", headers={"Origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in other.headers


def test_no_cors_headers_without_configuration(api: Api) -> None:
    response = api.client.get("/healthz", headers={"Origin": "https://app.example.org"})
    assert "access-control-allow-origin" not in response.headers


# -- body limit -----------------------------------------------------------------------------


def test_default_body_limit_survives_api_gateway_and_lambda() -> None:
    lambda_sync_payload = 6 * 1024 * 1024
    base64_size = 4 * ((DEFAULT_MAX_BODY_BYTES + 2) // 3)
    # headers (<= 10 KB, twice in a v1 event) and the request context fit in the margin
    assert base64_size + 64 * 1024 < lambda_sync_payload
    assert ApiSettings().max_body_bytes == DEFAULT_MAX_BODY_BYTES


def test_too_large_by_content_length_is_413_pointing_to_uploads(
    make_api: Callable[..., Api],
) -> None:
    client = make_api(max_body_bytes=1000).client
    body, content_type = multipart(
        {}, {"audio_file": ("a.wav", b"RIFF" + bytes(2000), "audio/wav")}
    )
    response = client.post("/predict", content=body, headers={"content-type": content_type})
    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "PAYLOAD_TOO_LARGE"
    assert "POST /uploads" in error["message"]


def _asgi_call(
    app: Any, headers: list[tuple[bytes, bytes]], chunks: list[bytes]
) -> tuple[int, int, bytes]:
    """(status, chunks the app pulled, response body) of one raw ASGI `POST /predict`."""
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled < len(chunks):
            pulled += 1
            return {
                "type": "http.request",
                "body": chunks[pulled - 1],
                "more_body": pulled < len(chunks),
            }
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 50000),
        "root_path": "",
        "path": "/predict",
        "raw_path": b"/predict",
        "headers": headers,
        "query_string": b"",
        "state": {"request_id": "t"},
    }
    asyncio.run(app(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], pulled, body


def _recording_app(
    max_body_bytes: int, reached: list[bool], seen: list[bytes] | None = None, engine: Any = None
) -> Any:
    """The app: `reached` gets True for every request whose route ran (its dependencies are
    solved after the body is read), `seen` the audio handed to the classifier."""

    class Recording:
        def classify(self, audio: bytes, **kwargs: Any) -> Any:
            if seen is not None:
                seen.append(audio)
            return engine.classify(audio, **kwargs)

    def provider() -> Any:
        reached.append(True)
        return Recording

    app = create_app(settings(max_body_bytes=max_body_bytes))
    app.dependency_overrides[get_classifier_provider] = provider
    return app


def test_body_limit_refuses_a_declared_size_before_reading() -> None:
    reached: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(True)

    limited = ContentLengthLimit(app, max_bytes=100)
    status, pulled, body = _asgi_call(limited, [(b"content-length", b"101")], [b"x" * 101])
    assert (status, pulled, reached) == (413, 0, [])
    assert json.loads(body)["error"]["code"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize("declared", [None, b"10"])
def test_body_limit_holds_when_content_length_is_absent_or_lies(declared: bytes | None) -> None:
    reached: list[bool] = []
    app = _recording_app(100, reached)
    headers = [(b"content-type", b"multipart/form-data; boundary=b")]
    headers += [(b"content-length", declared)] if declared else []
    # 1 MB in 64 KB chunks: refused after the first chunk, the rest never read
    status, pulled, body = _asgi_call(app, headers, [b"x" * 65536] * 16)
    assert (status, pulled, reached) == (413, 1, [])
    error = json.loads(body)["error"]
    assert error["code"] == "PAYLOAD_TOO_LARGE"
    assert "more than 100 bytes" in error["message"] and "POST /uploads" in error["message"]


def test_body_limit_passes_the_whole_body_through(engine: Any) -> None:
    audio = wav_bytes(pcm16(1.0))
    data, content_type = multipart({}, {"audio_file": ("a.wav", audio, "audio/wav")})
    reached: list[bool] = []
    seen: list[bytes] = []
    app = _recording_app(len(data), reached, seen, engine)  # exactly at the limit
    third = len(data) // 3
    chunks = [data[:third], data[third : 2 * third], data[2 * third :]]
    status, _, body = _asgi_call(app, [(b"content-type", content_type.encode())], chunks)
    assert status == 200, body
    assert (reached, seen) == ([True], [audio])


def test_every_route_with_a_body_refuses_one_over_the_limit_while_reading(
    make_api: Callable[..., Api],
) -> None:
    """No Content-Length (chunked): FastAPI's limit, set on every route, stops the read."""
    api = make_api(max_body_bytes=1000)
    operations = api.client.get("/openapi.json").json()["paths"]
    checked = []
    for path, methods in operations.items():
        for method, operation in methods.items():
            for media in (operation.get("requestBody") or {}).get("content", {}):
                content_type = media + ("; boundary=b" if media.startswith("multipart/") else "")
                response = api.client.request(
                    method,
                    path,
                    content=iter([b"x" * 600] * 4),
                    headers={"content-type": content_type},
                )
                assert response.status_code == 413, (path, media, response.text)
                error = error_of(response)
                assert error["code"] == "PAYLOAD_TOO_LARGE"
                assert "POST /uploads" in error["message"]
                checked.append((path, media))
    assert {path for path, _ in checked} == {
        "/predict",
        "/predict_s3",
        "/s3predict",
        "/s3predict-label6",
        "/uploads",
        "/backfills",
    }


def test_body_limit_under_uvicorn(make_api: Callable[..., Api]) -> None:
    import requests

    api = make_api(max_body_bytes=1000)
    with LiveServer(api.app) as live:
        declared = requests.post(
            f"{live.url}/uploads", data=b"x" * 2000, headers={"content-type": "application/json"}
        )
        chunked = requests.post(
            f"{live.url}/uploads",
            data=iter([b"x" * 600] * 4),
            headers={"content-type": "application/json"},
        )
    assert "transfer-encoding" not in declared.request.headers
    assert chunked.request.headers["transfer-encoding"] == "chunked"
    for response, size in ((declared, "2000 bytes"), (chunked, "more than 1000 bytes")):
        assert response.status_code == 413
        error = error_of(response)
        assert error["code"] == "PAYLOAD_TOO_LARGE"
        assert f"the request body is {size}" in error["message"]
        assert "POST /uploads" in error["message"]


# -- OpenAPI --------------------------------------------------------------------------------


def test_openapi_documents_routes_errors_and_examples(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in ("/predict", "/predict_s3", "/uploads", "/jobs/{job_id}", "/healthz", "/readyz"):
        assert path in paths, path
    predict = paths["/predict"]["post"]
    assert "multipart/form-data" in predict["requestBody"]["content"]
    assert {"401", "413", "415", "422"} <= set(predict["responses"])
    s3_body = paths["/predict_s3"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/x-www-form-urlencoded"} <= set(s3_body)
    components = schema["components"]["schemas"]
    legacy = {"result", "audio_label", "audio_feature", "text_label", "text_feature"}
    assert legacy | {"combined_label", "combined_feature"} <= set(
        components["PredictResponse"]["properties"]
    )
    assert components["PredictResponse"]["examples"]
    assert components["ErrorBody"]["examples"]
    assert "APIKeyHeader" in schema["components"]["securitySchemes"]
    assert "/" not in paths and "/static/{name}" not in paths


def test_examples_validate_against_their_models() -> None:
    from functions.api.errors import ErrorBody
    from functions.api.models import JobView, PredictResponse, UploadResponse

    for model in (PredictResponse, UploadResponse, JobView, ErrorBody):
        extra = model.model_config["json_schema_extra"]
        assert isinstance(extra, dict)
        examples = extra["examples"]
        assert isinstance(examples, list)
        for example in examples:
            model.model_validate(example)
