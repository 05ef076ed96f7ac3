"""The app's asynchronous flow over real HTTP: the API under uvicorn (``POST /uploads``,
``GET /jobs/{id}``), the recording sent to moto with the presigned POST, the local stack
behind it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from devstack.api_server import ApiServer
from devstack.stack import LocalStack
from tests.e2e.conftest import TRANSCRIPTS, sample

pytestmark = pytest.mark.e2e


@pytest.fixture
def api(
    make_stack: Callable[..., LocalStack],
) -> Iterator[Callable[..., tuple[httpx.Client, LocalStack]]]:
    """Start a local stack and the API in front of it: (HTTP client of the API, stack)."""
    servers: list[ApiServer] = []
    clients: list[httpx.Client] = []

    def start(**stack_config: Any) -> tuple[httpx.Client, LocalStack]:
        stack = make_stack(**stack_config)
        server = ApiServer().__enter__()
        servers.append(server)
        client = httpx.Client(base_url=server.url, timeout=30)
        clients.append(client)
        return client, stack

    try:
        yield start
    finally:
        for client in clients:
            client.close()
        for server in servers:
            server.__exit__(None, None, None)


def upload(client: httpx.Client, name: str, **body: Any) -> dict[str, Any]:
    created = client.post("/uploads", json={"filename": name, **body})
    assert created.status_code == 201, created.text
    answer: dict[str, Any] = created.json()
    post = answer["upload"]
    sent = httpx.post(
        post["url"],
        data=post["fields"],
        files={"file": (name, sample(name), post["content_type"])},
    )
    assert sent.status_code == 204, sent.text
    return answer


def poll(client: httpx.Client, job_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view: dict[str, Any] = client.get(f"/jobs/{job_id}").raise_for_status().json()
        if view["is_final"]:
            return view
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} not final after {timeout} s")


def test_the_apps_flow_uploads_then_polls_until_done(
    api: Callable[..., tuple[httpx.Client, LocalStack]],
) -> None:
    client, stack = api(env={"FUSION_GATE": "none"})
    created = upload(client, "ko-help-16k.wav")
    assert created["status"] == "UPLOAD_PENDING"

    view = poll(client, created["job_id"])

    assert view["status"] == "DONE" and view["source"] == "api"
    assert view["preliminary"]["decided_by"] == "audio_only"
    assert view["final"]["decided_by"] == "fusion"
    assert view["final"]["text_source"] == "transcribe" and view["reason_codes"] == []
    assert view["transcribe"]["status"] == "COMPLETED"
    assert stack.transcribe_job_names() == [f"alert-{created['job_id']}"]
    timings = view["timings"]
    assert timings["uploaded_at"] <= timings["preliminary_at"] <= timings["final_at"]
    answer = client.get(f"/jobs/{created['job_id']}")
    assert "retry-after" not in answer.headers  # final: nothing to poll for


def test_a_transcript_sent_with_the_upload_skips_transcribe(
    api: Callable[..., tuple[httpx.Client, LocalStack]],
) -> None:
    client, stack = api(env={"FUSION_GATE": "none"})
    text = TRANSCRIPTS["ko-regular-22k.wav"]
    created = upload(client, "ko-regular-22k.wav", transcript=text)
    assert created["transcript_supplied"] is True

    view = poll(client, created["job_id"])

    assert view["status"] == "DONE"
    assert view["final"]["text_source"] == "client" and view["final"]["decided_by"] == "fusion"
    assert view["transcribe"]["status"] == "SKIPPED"
    assert stack.transcribe_job_names() == []


def test_a_job_whose_upload_never_comes_times_out(
    api: Callable[..., tuple[httpx.Client, LocalStack]],
) -> None:
    client, _ = api(hard_timeout_seconds=1, sweep_interval_s=0.3)
    created = client.post("/uploads", json={"filename": "never.wav"}).raise_for_status().json()
    pending = client.get(f"/jobs/{created['job_id']}")
    assert pending.json()["status"] == "UPLOAD_PENDING" and "retry-after" in pending.headers

    view = poll(client, created["job_id"], timeout=15)

    assert view["status"] == "FAILED" and view["failure"]["reason"] == "TIMEOUT"
