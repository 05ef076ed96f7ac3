"""Malformed and careless requests: each gets the API's JSON error shape with a stable code
(deep JSON, text that is not UTF-8, stalled bodies, malformed HTTP), the client's Host header
never reaches a URL, an upload's presigned POST is handed out once per recording, and the
original server's paths and keys answer as it did."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from alertfusion.keys import new_job_id
from alertfusion.result import to_legacy
from tests.integration.api.conftest import API_KEY, Api, LiveServer, sample, sample_transcripts
from tests.integration.api.test_app import error_of

pytestmark = pytest.mark.integration

DEEP = ("[" * 1000 + "]" * 1000).encode()
DEEPER = ("[" * 100_000 + "]" * 100_000).encode()
KOREAN = "도와주세요 여기 사람이 쓰러졌어요"


# -- JSON nested too deep -------------------------------------------------------------------


@pytest.mark.parametrize(
    "body", [DEEP, DEEPER, b'{"s3_key": ' + DEEP + b"}"], ids=["1k", "100k", "in-a-field"]
)
@pytest.mark.parametrize("path", ["/predict_s3", "/s3predict", "/uploads", "/backfills"])
def test_deeply_nested_json_is_422(api: Api, path: str, body: bytes) -> None:
    response = api.client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert error_of(response)["code"] == "INVALID_INPUT"


# -- text that is not UTF-8 -----------------------------------------------------------------


def _form(
    fields: dict[str, bytes], files: dict[str, tuple[str, bytes]], charset: str = ""
) -> tuple[bytes, str]:
    boundary = "----alertfusionHardening0123456789"
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value
            + b"\r\n"
        )
    for name, (filename, data) in files.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: audio/wav\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    suffix = f"; charset={charset}" if charset else ""
    return b"".join(parts), f"multipart/form-data; boundary={boundary}{suffix}"


def test_text_input_in_euc_kr_is_422_not_latin_1(make_api: Callable[..., Api], engine: Any) -> None:
    api = make_api(engine=engine)
    body, content_type = _form(
        {"text_input": KOREAN.encode("euc-kr")},
        {"audio_file": ("a.wav", sample("ko-help-16k.wav"))},
    )
    response = api.client.post("/predict", content=body, headers={"content-type": content_type})
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == "INVALID_INPUT" and "text_input" in error["message"]


def test_a_declared_charset_is_honoured(make_api: Callable[..., Api], engine: Any) -> None:
    api = make_api(engine=engine)
    audio = sample("ko-help-16k.wav")
    body, content_type = _form(
        {"text_input": KOREAN.encode("euc-kr")}, {"audio_file": ("a.wav", audio)}, "euc-kr"
    )
    response = api.client.post("/predict", content=body, headers={"content-type": content_type})
    assert response.status_code == 200, response.text
    expected = engine.classify(audio, text=KOREAN, always_text=True)
    assert response.json()["text"] == expected.text.model_dump(mode="json")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (
            b"s3_key=uploads%2Fa.wav&text_input_s3=" + KOREAN.encode("euc-kr"),
            "application/x-www-form-urlencoded",
        ),
        (b"s3_key=uploads%2Fa.wav&text_input_s3=%B5%B5%BF%CD", "application/x-www-form-urlencoded"),
        _form({"s3_key": b"uploads/a.wav", "text_input_s3": KOREAN.encode("euc-kr")}, {}),
    ],
    ids=["urlencoded-raw", "urlencoded-escaped", "multipart"],
)
def test_predict_s3_text_that_is_not_utf8_is_422(api: Api, body: bytes, content_type: str) -> None:
    response = api.client.post("/predict_s3", content=body, headers={"content-type": content_type})
    assert response.status_code == 422, response.text
    assert error_of(response)["code"] == "INVALID_INPUT"


# -- the Host header ------------------------------------------------------------------------


def test_the_host_header_is_never_reflected(make_api: Callable[..., Api]) -> None:
    api = make_api()
    response = api.client.post(
        "/uploads", json={"content_type": "audio/wav"}, headers={"host": "evil.example"}
    )
    assert response.status_code == 201
    body = response.json()
    assert "evil" not in body["poll_url"] and "evil" not in response.headers["location"]
    assert body["poll_url"] == f"/jobs/{body['job_id']}" == response.headers["location"]
    configured = make_api(public_base_url="https://api.example.org/v1/")
    answer = configured.client.post(
        "/uploads", json={"content_type": "audio/wav"}, headers={"host": "evil.example"}
    ).json()
    assert answer["poll_url"] == f"https://api.example.org/v1/jobs/{answer['job_id']}"


# -- one presigned POST per recording -------------------------------------------------------


def test_a_replayed_idempotency_key_after_the_upload_gets_no_new_post(api: Api) -> None:
    headers = {"Idempotency-Key": "rec-after-upload"}
    first = api.client.post("/uploads", json={"content_type": "audio/wav"}, headers=headers).json()
    assert first["upload"] is not None
    api.put(first["upload"]["key"], sample("ko-help-16k.wav"))
    api.aws.run_starter(api.aws.upload_event(first["upload"]["key"]))
    replay = api.client.post("/uploads", json={"content_type": "audio/wav"}, headers=headers)
    assert replay.status_code == 200
    body = replay.json()
    assert body["job_id"] == first["job_id"] and body["replayed"] is True
    assert body["status"] == "TRANSCRIBING"
    assert body["upload"] is None  # the job has its recording: no POST for its key again


def test_the_presigned_post_pins_the_content_type_and_expires_in_two_minutes(api: Api) -> None:
    from datetime import UTC, datetime, timedelta

    from tests.integration.api.test_uploads import conditions_by_kind, policy_of

    before = datetime.now(UTC)
    upload = api.client.post("/uploads", json={"content_type": "audio/mp4"}).json()["upload"]
    exact, arrays = conditions_by_kind(policy_of(upload["fields"]))
    assert exact["Content-Type"] == "audio/mp4"
    assert not any(c[0] == "starts-with" for c in arrays)
    expiration = datetime.fromisoformat(
        policy_of(upload["fields"])["expiration"].replace("Z", "+00:00")
    )
    assert expiration <= before + timedelta(seconds=121)


def test_a_job_shows_which_object_its_verdicts_describe(api: Api) -> None:
    created = api.client.post("/uploads", json={"content_type": "audio/wav"}).json()
    key = created["upload"]["key"]
    api.put(key, sample("ko-help-16k.wav"))
    api.aws.run_starter(api.aws.upload_event(key))
    api.put(key, sample("ko-regular-22k.wav"))
    api.aws.run_starter(api.aws.upload_event(key))
    view = api.client.get(f"/jobs/{created['job_id']}").json()
    etag = api.aws.job(created["job_id"]).etag
    assert view["object"]["etag"] == etag
    assert view["object"]["replaced_at"] is not None


# -- the original server's paths and keys ---------------------------------------------------


@pytest.fixture
def engine_api(make_api: Callable[..., Api], engine: Any) -> Api:
    return make_api(engine=engine)


@pytest.mark.parametrize(("path", "gate"), [("/s3predict", None), ("/s3predict-label6", "none")])
def test_the_original_s3_paths_answer(
    engine_api: Api, engine: Any, path: str, gate: str | None
) -> None:
    name = "ko-help-16k.wav"
    key = f"uploads/{new_job_id()}.wav"
    engine_api.put(key, sample(name))
    text = sample_transcripts()[name]
    # the original page's form: multipart fields s3_key and text_input_s3
    body_bytes, content_type = _form({"s3_key": key.encode(), "text_input_s3": text.encode()}, {})
    response = engine_api.client.post(
        path, content=body_bytes, headers={"content-type": content_type}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    expected = engine.classify(sample(name), text=text, gate=gate, always_text=True)
    assert body["label"] == expected.label and body["decided_by"] == expected.decided_by
    for key_name, value in to_legacy(expected).items():
        assert body[key_name] == value, key_name
    if gate == "none":
        assert body["decided_by"] != "gate" and body["combined_probabilities"] is not None


def test_every_original_key_is_present_when_the_gate_decides(engine_api: Api, engine: Any) -> None:
    name = "ko-regular-22k.wav"
    audio = sample(name)
    if engine.classify(audio).decided_by != "gate":
        pytest.fail("the tiny bundle's gate does not decide this sample: pick another")
    response = engine_api.client.post(
        "/predict",
        files={"audio_file": (name, audio, "audio/wav")},
        data={"text_input": KOREAN},
    )
    body = response.json()
    keys = (
        "result",
        "audio_label",
        "audio_feature",
        "text_label",
        "text_feature",
        "combined_label",
        "combined_feature",
        "combined_probabilities",
    )
    assert all(k in body for k in keys)
    assert body["decided_by"] == "gate"
    assert body["text_label"] is not None and len(body["text_feature"]) == 6
    # the original answered placeholder numbers where no fusion ran: null here
    assert body["combined_feature"] is None and body["combined_probabilities"] is None


# -- over real HTTP: stalled bodies, malformed requests -------------------------------------


def _raw(port: int, payload: bytes, *, wait: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(payload)
        chunks: list[bytes] = []
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except TimeoutError:
            pass
    return b"".join(chunks)


def _parse(raw: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return status, headers, json.loads(body) if body else None


def test_a_stalled_body_is_answered_408(make_api: Callable[..., Api]) -> None:
    api = make_api(body_timeout_seconds=1.0)
    with LiveServer(api.app) as live:
        started = time.monotonic()
        raw = _raw(
            live.port,
            b"POST /uploads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"content_',
        )
        elapsed = time.monotonic() - started
    status, headers, body = _parse(raw)
    assert status == 408 and body["error"]["code"] == "REQUEST_TIMEOUT"
    assert headers["content-type"].startswith("application/json")
    assert elapsed < 5


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /uploads HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
        b"POST /uploads HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"GET /healthz HTTP/1.1\rHost: x\r\n\r\n",
        b"GARBAGE\r\n\r\n",
    ],
    ids=["bad-length", "two-lengths", "bare-cr", "not-http"],
)
def test_malformed_http_gets_the_json_error_shape(request_bytes: bytes) -> None:
    import uvicorn

    from functions.api.app import create_app
    from functions.api.server import uvicorn_options
    from tests.integration.api.conftest import settings

    app = create_app(settings())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="critical", **uvicorn_options()
    )
    server = uvicorn.Server(config)
    import threading

    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        status, headers, body = _parse(_raw(port, request_bytes, wait=5))
    finally:
        server.should_exit = True
        thread.join(timeout=20)
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    assert body["error"]["code"] == "MALFORMED_REQUEST" and body["error"]["request_id"]


def test_stalled_headers_are_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    import uvicorn

    from functions.api.app import create_app
    from functions.api.server import uvicorn_options
    from tests.integration.api.conftest import settings

    app = create_app(settings())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = uvicorn_options(header_timeout_seconds=1.0)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        started = time.monotonic()
        raw = _raw(port, b"POST /uploads HTTP/1.1\r\nHost: x\r\nContent-Ty", wait=10)
        elapsed = time.monotonic() - started
    finally:
        server.should_exit = True
        thread.join(timeout=20)
    status, headers, body = _parse(raw)
    assert status == 408 and body["error"]["code"] == "REQUEST_TIMEOUT"
    assert elapsed < 5


def test_the_api_key_is_still_checked_on_the_original_paths(make_api: Callable[..., Api]) -> None:
    api = make_api(api_key=API_KEY)
    for path in ("/s3predict", "/s3predict-label6"):
        response = api.client.post(path, data={"s3_key": "uploads/a.wav"})
        assert response.status_code == 401 and error_of(response)["code"] == "UNAUTHORIZED"
