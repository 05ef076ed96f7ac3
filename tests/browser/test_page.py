"""The page at `/upload` in headless Chromium: the synchronous form shows the verdict with
per-class bars equal to the engine's numbers, per-window results, the untrained-bundle
warning, errors in the API's shape, and the API key kept in sessionStorage only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from functions.api.app import create_app
from functions.api.settings import ApiSettings
from tests.browser.conftest import open_page
from tests.conftest import SAMPLES
from tests.integration.api.conftest import API_KEY, with_engine
from tests.integration.api.live_server import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

KO_LABELS = {"help": "도움요청", "regular": "정상", "violence": "폭력범죄"}


@pytest.fixture
def server(engine: Any) -> Iterator[LiveServer]:
    app = with_engine(create_app(ApiSettings.model_validate({})), engine)
    with LiveServer(app) as live:
        yield live


def expected_meters(result: Any) -> dict[str, list[float]]:
    """aria-valuenow of every bar group the page draws for `result`."""
    groups: dict[str, list[float]] = {}
    if result.probabilities is not None:
        groups["fused"] = [round(100 * p, 1) for p in result.probabilities.values()]
    if result.audio.gate is not None:
        groups["gate"] = [round(100 * p, 1) for p in result.audio.gate.probabilities.values()]
    if result.audio.probabilities is not None:
        groups["audio"] = [round(100 * p, 1) for p in result.audio.probabilities.values()]
    if result.text.status == "used" and result.text.probabilities is not None:
        groups["text"] = [round(100 * p, 1) for p in result.text.probabilities.values()]
    return groups


def meter_values(page: Any, caption_start: str) -> list[float]:
    values = page.eval_on_selector_all(
        f'ul[aria-label^="{caption_start}"] [role="meter"]',
        "els => els.map(e => Number(e.getAttribute('aria-valuenow')))",
    )
    return [float(v) for v in values]


def test_predict_shows_the_verdict_and_its_bars(
    browser: Any, server: LiveServer, engine: Any
) -> None:
    sample = SAMPLES / "ko-help-16k.wav"
    text = "도와주세요 여기 사람이 쓰러졌어요"
    # as /predict classifies: the text model runs even where the gate alone decides
    expected = engine.classify(sample.read_bytes(), text=text, always_text=True)

    page = open_page(browser, server.url)
    page.set_input_files("#predict-file", str(sample))
    page.fill("#predict-text", text)
    page.click("#predict-form button")
    verdict = page.wait_for_selector("[data-testid='verdict']")

    label_text = verdict.inner_text()
    assert expected.label in label_text and expected.label_ko in label_text
    assert f"{100 * expected.emergency_probability:.1f}%" in label_text
    groups = expected_meters(expected)
    assert page.locator("#result [role='meter']").count() == sum(map(len, groups.values()))
    captions = {"fused": "융합", "gate": "이진 게이트", "audio": "음성", "text": "텍스트"}
    for group, values in groups.items():
        assert meter_values(page, captions[group]) == values, group
    # the bars are drawn to their value (CSSOM width; the CSP forbids inline styles)
    widths = page.eval_on_selector_all(
        "#result [role='meter'] .fill", "els => els.map(e => e.style.width)"
    )
    assert all(w.endswith("%") for w in widths) and len(set(widths)) > 1
    # ... and rendered: each fill's box is its share of the track, in pixels
    drawn = page.eval_on_selector_all(
        "#result [role='meter']",
        "els => els.map(e => [e.querySelector('.fill').getBoundingClientRect().width,"
        " e.getBoundingClientRect().width, Number(e.getAttribute('aria-valuenow'))])",
    )
    for fill, track, value in drawn:
        assert track > 20
        assert abs(fill - track * value / 100) <= 1.5, (fill, track, value)
    # untrained demo bundle: the warning is there, in both languages
    warning = page.locator(".warning").inner_text()
    assert "학습되지 않은" in warning and "untrained" in warning
    assert page.problems == []


def test_long_recording_shows_per_window_results(
    browser: Any, server: LiveServer, engine: Any
) -> None:
    sample = SAMPLES / "ko-violence-long-16k.wav"
    text = "그만해요. 때리지 마세요. 살려주세요."
    expected = engine.classify(sample.read_bytes(), text=text, always_text=True)  # as /predict
    page = open_page(browser, server.url, "/")
    page.set_input_files("#predict-file", str(sample))
    page.fill("#predict-text", text)
    page.click("#predict-form button")
    page.wait_for_selector("table.windows")
    rows = page.locator("table.windows tbody tr")
    assert rows.count() == len(expected.windows) == 5
    selected = page.locator("table.windows tr[aria-current='true'] td").first.inner_text()
    assert selected == str(expected.selected_window)
    assert page.problems == []


def test_errors_are_shown_with_code_and_request_id(browser: Any, server: LiveServer) -> None:
    page = open_page(browser, server.url)
    page.set_input_files(
        "#predict-file",
        files=[{"name": "photo.wav", "mimeType": "audio/wav", "buffer": b"\x89PNG\r\n\x1a\n" * 8}],
    )
    page.click("#predict-form button")
    error = page.wait_for_selector("[data-testid='error']")
    assert "UNSUPPORTED_FORMAT" in error.inner_text()
    assert "request id:" in error.inner_text()
    assert page.locator("[data-testid='verdict']").count() == 0


def test_api_key_lives_in_session_storage_only(browser: Any, engine: Any) -> None:
    app = with_engine(create_app(ApiSettings.model_validate({"API_KEY": API_KEY})), engine)
    with LiveServer(app) as live:
        page = open_page(browser, live.url)
        page.set_input_files("#predict-file", str(SAMPLES / "ko-regular-22k.wav"))
        page.click("#predict-form button")
        assert "UNAUTHORIZED" in page.wait_for_selector("[data-testid='error']").inner_text()

        page.fill("#api-key", API_KEY)
        page.click("#predict-form button")
        page.wait_for_selector("[data-testid='verdict']")
        assert page.evaluate("sessionStorage.getItem('alertfusion.apiKey')") == API_KEY
        assert page.evaluate("localStorage.length") == 0
        assert API_KEY not in page.evaluate("document.cookie")

        page.reload()
        page.wait_for_selector("html[data-ready='true']", state="attached")
        assert page.input_value("#api-key") == API_KEY  # same tab: kept
        other_tab = open_page(browser, live.url)
        assert other_tab.input_value("#api-key") == ""  # another tab: not shared


def test_page_loads_nothing_from_outside(browser: Any, server: LiveServer) -> None:
    requested: list[str] = []
    page = browser.new_page()
    page.on("request", lambda r: requested.append(r.url))
    page.goto(server.url + "/upload")
    page.wait_for_selector("html[data-ready='true']", state="attached")
    assert requested and all(url.startswith(server.url) for url in requested), requested
    # labelled controls and a heading per form (accessible names)
    for control in ("#api-key", "#predict-file", "#predict-text", "#s3-key", "#async-file"):
        assert page.locator(f"label[for='{control[1:]}']").count() == 1
    assert page.locator("h2").count() >= 4


def test_screenshot_path_is_png(tmp_path: Path, browser: Any, server: LiveServer) -> None:
    page = open_page(browser, server.url)
    out = tmp_path / "page.png"
    page.screenshot(path=str(out), full_page=True)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
