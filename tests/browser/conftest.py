"""The page in Debian's headless Chromium, driven by the Playwright Python package (its own
browser download is impossible here: `executable_path` points at /usr/bin/chromium), with a
fresh profile per test; the app served by a live uvicorn in this process."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# Package scope, not session: Playwright's sync API keeps an asyncio loop running in the main
# thread while it is open, and later tiers that call asyncio.run() (Mangum, TestClient) fail
# with "cannot be called from a running event loop".
@pytest.fixture(scope="package")
def playwright() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is missing: `make system-deps` installs it")
    with sync_playwright() as instance:
        yield instance


@pytest.fixture
def browser(playwright: Any, tmp_path: Path) -> Iterator[Any]:
    """A Chromium context with a fresh user-data directory."""
    context = playwright.chromium.launch_persistent_context(
        str(tmp_path / "chromium-profile"),
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_FLAGS,
        viewport={"width": 1100, "height": 900},
        locale="ko-KR",
    )
    context.set_default_timeout(30_000)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture(scope="session")
def engine(tiny_bundle: Path) -> Any:
    from alertfusion.engine import Engine

    return Engine.from_bundle(tiny_bundle)


def open_page(browser: Any, base_url: str, path: str = "/upload") -> Any:
    """The page, loaded and its script ready; console errors and failed requests recorded
    on `page.problems`."""
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.problems = problems
    page.goto(base_url + path)
    page.wait_for_selector("html[data-ready='true']", state="attached")
    return page
