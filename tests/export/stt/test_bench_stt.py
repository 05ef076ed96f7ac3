"""`python -m bench stt` in its quick mode (tiny models, short audio): both families and both
precisions go through the runtime and give a complete report; the cost arithmetic; the target
check. No timing is asserted (speed targets never are in tests)."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import onnx
import pytest

from alertfusion.pricing import TRANSCRIBE_MINIMUM_SECONDS, price
from bench.stt import (
    QUICK_SECONDS,
    TOKENS_PER_SECOND,
    costs,
    lambda_usd_per_1000,
    target,
    transcribe_usd_per_1000,
)
from tests.conftest import REPO

pytestmark = [pytest.mark.export]


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    tmp = tmp_path_factory.mktemp("bench-stt")
    out, work = tmp / "stt.json", tmp / "models"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "stt", "--quick", "--out", str(out), "--work", str(work)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text("utf-8")), done.stdout, work


def test_quick_mode_measures_both_families_in_both_precisions(
    quick: tuple[dict[str, Any], str, Path],
) -> None:
    report, stdout, _ = quick
    assert report["size"] == "tiny"
    assert report["int8_not_measured"] == {}
    measured = {(r["family"], r["precision"]) for r in report["results"]}
    assert measured == {(f, p) for f in ("ctc", "whisper") for p in ("fp32", "int8")}
    for r in report["results"]:
        assert set(r["durations"]) == {f"{s:g}" for s in QUICK_SECONDS}
        assert r["session_ms"] > 0 and r["first_call_ms"] > 0 and r["file_mb"] > 0
        assert r["peak_rss_added_mb"] >= 0
        for key, d in r["durations"].items():
            assert d["median_ms"] > 0 and len(d["runs_ms"]) == 1
            assert d["rtf"] == pytest.approx(d["median_ms"] / (float(key) * 1e3), abs=1e-4)
            assert 0 < d["front_end_ms"] < d["median_ms"]
            if r["family"] == "whisper":
                # exactly the fixed number of decoder steps, whatever the untrained model says
                assert d["tokens"] == round(TOKENS_PER_SECOND * float(key))
            else:
                assert 0 <= d["tokens"] <= 30 * float(key)  # the recipe's runaway cut
        if r["family"] == "whisper":
            assert r["encoder_ms"] > 0 and set(r["decoder_ms_per_token"]) == set(r["durations"])
    assert "| ctc | int8 | 1 |" in stdout and "Amazon Transcribe $6.00" in stdout


def test_int8_files_are_quantized(quick: tuple[dict[str, Any], str, Path]) -> None:
    _, _, work = quick

    def ops(name: str) -> collections.Counter[str]:
        return collections.Counter(n.op_type for n in onnx.load(str(work / name)).graph.node)

    assert ops("ctc.int8.onnx")["DynamicQuantizeLSTM"] == ops("ctc.onnx")["LSTM"] > 0
    assert ops("whisper.int8.onnx")["MatMulInteger"] > 0
    assert ops("whisper.decoder.int8.onnx")["MatMulInteger"] > 0


def test_the_quick_report_costs_its_shortest_clip(quick: tuple[dict[str, Any], str, Path]) -> None:
    report, _, _ = quick
    cost = report["cost_per_1000_clips"]
    assert cost["clip_seconds"] == QUICK_SECONDS[0]
    assert cost["transcribe_usd"] == pytest.approx(transcribe_usd_per_1000(QUICK_SECONDS[0]))
    assert len(cost["in_bundle_usd"]) == 4
    assert report["target"]["measured"] == {}  # no 5 s audio in quick mode


def test_transcribe_bills_at_least_fifteen_seconds() -> None:
    per_minute = price("transcribe_minute")
    assert TRANSCRIBE_MINIMUM_SECONDS == 15
    assert transcribe_usd_per_1000(5.0) == pytest.approx(1000 * 15 / 60 * per_minute)
    assert transcribe_usd_per_1000(5.0) == pytest.approx(6.0)  # the "about $6"
    assert transcribe_usd_per_1000(30.0) == pytest.approx(1000 * 30 / 60 * per_minute)


def test_lambda_cost_is_gb_seconds() -> None:
    gb_s = price("lambda_gb_second_x86")
    assert lambda_usd_per_1000(1000.0, 1024) == pytest.approx(1000 * gb_s)
    assert lambda_usd_per_1000(500.0, 3008) == pytest.approx(1000 * 0.5 * 3008 / 1024 * gb_s)
    result = {"family": "ctc", "precision": "fp32", "threads": 1}
    rows = costs([{**result, "durations": {"5": {"median_ms": 200.0}}}], "5", 2048)
    assert rows["in_bundle_usd"]["ctc fp32 1t"]["usd"] == pytest.approx(
        1000 * 0.2 * 2 * gb_s, abs=1e-4
    )
    assert rows["transcribe_usd"] == pytest.approx(6.0)


def test_target_is_whisper_int8_on_five_seconds() -> None:
    def row(family: str, precision: str, threads: int, rtf: float) -> dict[str, Any]:
        return {"family": family, "precision": precision, "threads": threads,
                "durations": {"5": {"rtf": rtf}, "30": {"rtf": 0.01}}}  # fmt: skip

    found = target(
        [row("whisper", "int8", 1, 0.25), row("whisper", "int8", 2, 0.08),
         row("whisper", "fp32", 2, 0.05), row("ctc", "int8", 2, 0.01)]
    )  # fmt: skip
    assert found["measured"] == {
        "1t": {"rtf": 0.25, "met": False},
        "2t": {"rtf": 0.08, "met": True},
    }
