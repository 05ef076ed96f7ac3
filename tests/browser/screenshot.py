"""The README's screenshot of the page: `/upload` after classifying the long sample with its
transcript (verdict, bars for the fused, audio and text probabilities, per-window table).

    .venv/bin/python -m tests.browser.screenshot [--bundle build/models/demo] [--gate none]
                                                 [--out docs/img/page.png]

Same Chromium and flags as the browser tests. ``--gate none`` runs every model on every
window, so all bar groups have something to show.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from tests.browser.conftest import CHROMIUM, CHROMIUM_FLAGS
from tests.conftest import DEMO_BUNDLE, REPO, SAMPLES

SAMPLE = "ko-violence-long-16k.wav"


def main(argv: list[str] | None = None) -> int:
    from playwright.sync_api import sync_playwright

    from alertfusion.engine import Engine
    from functions.api.app import create_app
    from functions.api.settings import ApiSettings
    from tests.integration.api.conftest import with_engine
    from tests.integration.api.live_server import LiveServer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=DEMO_BUNDLE)
    parser.add_argument("--gate", choices=["binary", "none"], default="none")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "page.png")
    args = parser.parse_args(argv)

    text = json.loads((SAMPLES / "transcripts.json").read_text("utf-8"))[SAMPLE]
    engine = Engine.from_bundle(args.bundle, gate=args.gate)
    app = with_engine(create_app(ApiSettings.model_validate({})), engine)
    with LiveServer(app) as live, sync_playwright() as p, tempfile.TemporaryDirectory() as d:
        context = p.chromium.launch_persistent_context(
            d,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1100, "height": 900},
            locale="ko-KR",
        )
        try:
            page = context.new_page()
            page.goto(live.url + "/upload")
            page.wait_for_selector("html[data-ready='true']", state="attached")
            page.set_input_files("#predict-file", str(SAMPLES / SAMPLE))
            page.fill("#predict-text", text)
            page.click("#predict-form button")
            page.wait_for_selector("table.windows")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
        finally:
            context.close()
    sys.stdout.write(f"wrote {args.out} ({engine.manifest.bundle_version}, gate {args.gate})\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
