"""The page's asynchronous flow in headless Chromium against the local stack
(devstack: moto as a real HTTP server, the real starter/classifier/sweeper
handlers fed by moto's S3 and EventBridge deliveries, the labelled Transcribe stand-in):
`POST /uploads` → the browser's presigned POST to (moto's) S3 → polling `/jobs/{id}` until
DONE. Then `/predict_s3` from the page on the object the browser uploaded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from functions.api.app import create_app
from functions.api.settings import ApiSettings
from tests.browser.conftest import open_page
from tests.conftest import SAMPLES
from tests.integration.api.live_server import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

SAMPLE = "ko-help-16k.wav"


@pytest.fixture
def stack(tiny_bundle: Path) -> Iterator[Any]:
    from devstack.config import LocalConfig
    from devstack.stack import LocalStack

    with LocalStack(LocalConfig(bundle=str(tiny_bundle))) as local:
        yield local


@pytest.fixture
def server(stack: Any) -> Iterator[LiveServer]:
    # the stand-in transcribes at once: no reason to wait for real Transcribe's ~15 s
    settings = ApiSettings.model_validate({"TRANSCRIBE_EXPECTED_SECONDS": 0})
    with LiveServer(create_app(settings)) as live:
        yield live


def test_upload_and_watch_the_job_finish(browser: Any, stack: Any, server: LiveServer) -> None:
    page = open_page(browser, server.url)
    page.set_input_files("#async-file", str(SAMPLES / SAMPLE))
    page.click("#async-form button")
    page.wait_for_function(
        "() => (document.querySelector(\"[data-testid='job-status']\") || {}).textContent"
        "?.includes('DONE')",
        timeout=120_000,
    )
    log = page.locator("#async-log li").all_inner_texts()
    assert any("UPLOAD_PENDING" in line or "작업 생성" in line for line in log), log
    assert any("DONE" in line for line in log), log

    job_id = page.locator("[data-testid='job-status']").inner_text().split("job ")[-1].strip(")")
    job = requests.get(f"{server.url}/jobs/{job_id}", timeout=10).json()
    assert job["status"] == "DONE"
    assert job["object_key"] == f"uploads/{job_id}.wav"
    # the object S3 holds is the file the browser sent, byte for byte
    stored = stack.client("s3").get_object(Bucket=stack.config.bucket, Key=job["object_key"])
    assert stored["Body"].read() == (SAMPLES / SAMPLE).read_bytes()
    assert stored["ContentType"] == "audio/wav"
    # the page shows both verdicts of the job, as the API reports them
    verdicts = page.locator("[data-testid='verdict']").all_inner_texts()
    assert len(verdicts) == 2
    assert job["final"]["label"] in verdicts[0]
    assert job["preliminary"]["label"] in verdicts[1]
    assert page.problems == []

    # /predict_s3 from the page, on the object the browser uploaded
    page.fill("#s3-key", job["object_key"])
    page.click("#s3-form button")
    # the job view gives way to the result of /predict_s3
    page.wait_for_function(
        "() => !document.querySelector(\"[data-testid='job-status']\")"
        " && document.querySelector(\"[data-testid='verdict']\")",
        timeout=30_000,
    )
    result = page.locator("[data-testid='verdict']").inner_text()
    direct = requests.post(
        f"{server.url}/predict_s3", json={"s3_key": job["object_key"]}, timeout=60
    ).json()
    assert f"{direct['label_ko']} · {direct['label']}" in result
    # audio only, the same audio and engine as the job's preliminary verdict
    assert direct["emergency_probability"] == job["preliminary"]["emergency_probability"]
    assert page.problems == []
