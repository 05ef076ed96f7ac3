"""The page's microphone in headless Chromium with a fake capture device fed from a sample
recording: MediaRecorder's WebM/Opus (and its MP4, as Safari gives) goes
through `/uploads` like the app's recording, the local stack's pipeline classifies it (a
WebM from MediaRecorder has no duration in its header), and the page shows the verdict. The
bundle switch sends the chosen bundle's name, and the page shows that bundle's labels."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from functions.api.app import create_app
from functions.api.settings import ApiSettings
from tests.browser.conftest import CHROMIUM, CHROMIUM_FLAGS, open_page
from tests.conftest import SAMPLES
from tests.integration.api.live_server import LiveServer
from tests.recipe_bundles import identity_scalers, recipe_dict, write_bundle

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

#: what the fake microphone plays (looped)
SPOKEN = SAMPLES / "ko-help-16k.wav"
RECORD_MS = 2500
EBML_MAGIC = b"\x1a\x45\xdf\xa3"


@pytest.fixture(scope="module")
def infant_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bundle(
        identity_scalers(recipe_dict("infant-cry")), tmp_path_factory.mktemp("infant")
    )


@pytest.fixture
def stack(tiny_bundle: Path, infant_bundle: Path) -> Iterator[Any]:
    from alertfusion.catalog import reset_catalog
    from alertfusion.engine import reset_engine
    from devstack.config import LocalConfig
    from devstack.stack import LocalStack

    config = LocalConfig(
        bundle=str(tiny_bundle), env={"MODEL_BUNDLES": f"infant-cry={infant_bundle}"}
    )
    reset_catalog()
    with LocalStack(config) as local:
        yield local
    reset_catalog()
    reset_engine()


@pytest.fixture
def server(stack: Any) -> Iterator[LiveServer]:
    settings = ApiSettings.model_validate({"TRANSCRIBE_EXPECTED_SECONDS": 0})
    with LiveServer(create_app(settings)) as live:
        yield live


@pytest.fixture
def microphone(playwright: Any, tmp_path: Path) -> Iterator[Any]:
    """Chromium whose microphone plays SPOKEN, the permission prompt accepted."""
    context = playwright.chromium.launch_persistent_context(
        str(tmp_path / "chromium-profile"),
        executable_path=CHROMIUM,
        headless=True,
        args=[
            *CHROMIUM_FLAGS,
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-audio-capture={SPOKEN}",
            "--autoplay-policy=no-user-gesture-required",
        ],
        viewport={"width": 1100, "height": 900},
        locale="ko-KR",
    )
    context.set_default_timeout(30_000)
    try:
        yield context
    finally:
        context.close()


def _record(page: Any) -> dict[str, Any]:
    """Record RECORD_MS from the fake microphone and wait for the job's end; the job."""
    page.click("#mic-start")
    page.wait_for_function(
        "() => document.querySelector('#mic-status').textContent.includes('recording')"
    )
    page.wait_for_timeout(RECORD_MS)
    page.click("#mic-stop")
    page.wait_for_function(
        "() => (document.querySelector(\"[data-testid='job-status']\") || {}).textContent"
        "?.includes('DONE') || (document.querySelector(\"[data-testid='job-status']\") || {})"
        ".textContent?.includes('FAILED')",
        timeout=120_000,
    )
    status = page.locator("[data-testid='job-status']").inner_text()
    job_id = status.split("job ")[-1].strip(")")
    return {"job_id": job_id, "status": status}


def test_the_microphone_records_webm_opus_and_gets_a_verdict(
    microphone: Any, stack: Any, server: LiveServer
) -> None:
    page = open_page(microphone, server.url)
    done = _record(page)
    job = requests.get(f"{server.url}/jobs/{done['job_id']}", timeout=10).json()
    assert job["status"] == "DONE", job
    assert job["object_key"].endswith(".webm")
    stored = stack.client("s3").get_object(Bucket=stack.config.bucket, Key=job["object_key"])
    data = stored["Body"].read()
    assert stored["ContentType"] == "audio/webm" and data[:4] == EBML_MAGIC
    assert job["duration_s"] is None  # the starter's probe: no Duration element to read
    # what MediaRecorder wrote decodes to about the time recorded (its header has no duration)
    assert job["final"]["duration_s"] == pytest.approx(RECORD_MS / 1000, abs=1.0)
    assert job["final"]["recipe"] == "emergency-voice"
    verdicts = page.locator("[data-testid='verdict']").all_inner_texts()
    assert job["final"]["label"] in verdicts[0]
    assert "recording.webm" not in page.locator("#mic-status").inner_text()
    assert "audio/webm" in page.locator("#mic-status").inner_text()
    assert page.problems == []


def test_the_microphone_records_mp4_where_that_is_what_the_browser_gives(
    microphone: Any, stack: Any, server: LiveServer
) -> None:
    # as Safari: WebM is not offered, MP4 is (Debian's Chromium, without an AAC encoder,
    # puts Opus in it; MP4/AAC uploads are the app's format, tested in the pipeline's tiers)
    microphone.add_init_script(
        "(() => { const real = MediaRecorder.isTypeSupported.bind(MediaRecorder);"
        " MediaRecorder.isTypeSupported = (t) => !t.startsWith('audio/webm') && real(t); })()"
    )
    page = open_page(microphone, server.url)
    assert page.evaluate("() => MediaRecorder.isTypeSupported('audio/mp4')")
    done = _record(page)
    job = requests.get(f"{server.url}/jobs/{done['job_id']}", timeout=10).json()
    assert job["status"] == "DONE", job
    assert job["object_key"].endswith(".m4a")
    stored = stack.client("s3").get_object(Bucket=stack.config.bucket, Key=job["object_key"])
    data = stored["Body"].read()
    assert stored["ContentType"] == "audio/mp4" and data[4:8] == b"ftyp"
    assert job["final"]["duration_s"] == pytest.approx(RECORD_MS / 1000, abs=1.0)
    assert "audio/mp4" in page.locator("#mic-status").inner_text()
    assert page.problems == []


def test_the_bundle_switch_sends_the_bundle_and_shows_its_labels(
    microphone: Any, stack: Any, server: LiveServer
) -> None:
    page = open_page(microphone, server.url)
    options = page.locator("#bundle-select option").all_inner_texts()
    assert len(options) == 2 and any("infant-cry" in o for o in options)
    page.select_option("#bundle-select", "infant-cry")
    info = page.locator("[data-testid='bundle-info']").inner_text()
    assert "배고픔 · hungry" in info and "그외 · other" in info and "Transcribe" in info
    done = _record(page)
    job = requests.get(f"{server.url}/jobs/{done['job_id']}", timeout=10).json()
    assert job["status"] == "DONE" and job["bundle"] == "infant-cry", job
    assert job["transcribe"]["status"] == "SKIPPED"
    final = job["final"]
    assert final["recipe"] == "infant-cry" and final["label"] in {"hungry", "other"}
    verdict = page.locator("[data-testid='verdict']").first.inner_text()
    assert f"{final['label_ko']} · {final['label']}" in verdict
    # the bars are the bundle's labels, with their display names
    names = page.locator("#result .bar-row .name").all_inner_texts()
    assert set(names) == {"배고픔 · hungry", "그외 · other"}
    # the choice is kept for this tab
    page.reload()
    page.wait_for_selector("html[data-ready='true']", state="attached")
    assert page.eval_on_selector("#bundle-select", "e => e.value") == "infant-cry"
    assert page.problems == []
