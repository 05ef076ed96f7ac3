"""The benchmark's own parts: statistics, target checks, installed sizes, its child processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import deps
from bench.clips import BENCH_TEXT, THROUGHPUT_CLIPS, write_clips
from bench.run import (
    TARGETS,
    Worker,
    check_targets,
    percentile,
    stage_medians,
    summary,
    table,
)
from tests.conftest import REPO
from tests.unit.engine.conftest import HELP_WAV

pytestmark = pytest.mark.unit


def test_stage_medians_are_per_stage() -> None:
    stages = [{"decode_ms": 1.0, "total_ms": 9.0}, {"decode_ms": 3.0, "total_ms": 5.0}]
    stages.append({"decode_ms": 2.0, "total_ms": 7.0})
    assert stage_medians(stages) == {"decode_ms": 2.0, "total_ms": 7.0}
    assert stage_medians([]) == {}


def test_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == pytest.approx(50.5)
    assert percentile(values, 0.95) == pytest.approx(95.05)
    assert summary([3.0, 1.0, 2.0]) == {"p50_ms": 2.0, "p95_ms": 2.9, "min_ms": 1.0, "n": 3}


def _report(ours_5s: float, seed_5s: float) -> dict[str, object]:
    clip = {
        "seed": {"p50_ms": seed_5s, "p95_ms": seed_5s},
        "ours": {"p50_ms": ours_5s, "p95_ms": ours_5s},
        "speedup": round(seed_5s / ours_5s, 1),
    }
    return {
        "machine": {"cpu": "x", "vcpus": 2, "avx512_vnni": True, "onnxruntime": "1"},
        "conditions": {"load_at_start": {}, "load_at_end": {}},
        "inputs": {"text_tokens": 20},
        "clip_5s": clip,
        "clip_25s": clip,
        "cold_start": {
            "seed_ms": 5000,
            "ours_ms": 600,
            "speedup": 8.3,
            "phases_ms": {"ours": {}},
            "peak_rss_mb": {"ours": 250.0},
        },
        "peak_rss_mb": {"seed": 1200.0, "ours": 270.0},
        "runtime_deps_mb": {"seed": 1300.0, "ours": 290.0},
        "throughput": {"seed_1_stream": 4.0},
        "throughput_clips_per_s": 70.0,
    }


def test_targets_are_checked_in_the_right_direction() -> None:
    good = check_targets(_report(ours_5s=10.0, seed_5s=200.0))
    assert set(good) == set(TARGETS)
    assert all(t["met"] for t in good.values())
    slow = check_targets(_report(ours_5s=30.0, seed_5s=200.0))
    assert not slow["clip_5s_p50_ms"]["met"] and not slow["clip_5s_speedup"]["met"]
    assert slow["cold_start_ms"]["met"]


def test_a_ratio_just_under_its_target_is_a_miss_though_it_rounds_to_it() -> None:
    near = check_targets(_report(ours_5s=12.72, seed_5s=190.57))  # 14.98x, shown as 15.0x
    assert near["clip_5s_speedup"]["measured"] < 15.0
    assert not near["clip_5s_speedup"]["met"]


def test_the_table_names_every_target() -> None:
    report = _report(10.0, 200.0)
    report["targets"] = check_targets(report)
    text = table(report)
    assert "5 s clip p50 / p95 ms" in text
    for key in TARGETS:
        assert key in text


def test_installed_sizes_come_from_the_file_lists() -> None:
    names = deps.runtime_lock()
    assert "onnxruntime" in names and "numpy" in names and "torch" not in names
    size, missing = deps.installed_mb(["numpy"])
    assert size > 5 and missing == []
    assert deps.installed_mb(["no-such-distribution"]) == (0.0, ["no-such-distribution"])
    closure = deps.closure(("librosa",))
    assert "librosa" in closure and "numba" in closure


def test_the_image_figure_is_the_installed_lock_less_the_botocore_models_the_image_drops() -> None:
    botocore_data, _ = deps.installed_mb(["botocore"])
    trimmed = deps.image_trim_mb()
    # the image keeps a handful of the ~440 service models: most of the data, never all of it
    assert 10 < trimmed < botocore_data
    report = deps.report()
    ours, installed = report["ours"], report["ours_installed"]
    assert isinstance(ours, float) and isinstance(installed, float)
    assert ours == pytest.approx(installed - trimmed, abs=0.11)


def test_clips(tmp_path: Path) -> None:
    import soundfile as sf

    clips = write_clips(tmp_path)
    assert sf.info(str(clips["clip_5s"])).duration == pytest.approx(5.0)
    assert sf.info(str(clips["clip_25s"])).duration == pytest.approx(25.0)
    files = sorted(clips["throughput"].glob("*.wav"))
    assert len(files) == THROUGHPUT_CLIPS
    assert len({f.read_bytes() for f in files}) == THROUGHPUT_CLIPS  # no two alike


def test_a_cold_start_child(tiny_bundle: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.cold", "ours", str(tiny_bundle), str(HELP_WAV), BENCH_TEXT],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["label"] in ("regular", "help", "robbery", "sexual", "theft", "violence")
    assert {"import_ms", "bundle_ms", "sessions_ms", "first_verdict_ms"} <= set(answer["phases"])
    assert answer["peak_rss_mb"] > 20


def test_a_worker(tiny_bundle: Path) -> None:
    worker = Worker("ours", tiny_bundle)
    try:
        assert worker.ready["ready"] is True
        answer = worker.ask(op="latency", file=str(HELP_WAV), n=3, text=BENCH_TEXT)
        times, stages = answer["ms"], answer["stages"]
        assert len(times) == 3 and all(t > 0 for t in times)
        # the engine's own timings of the same requests: decoding took time, total <= wall
        assert len(stages) == 3
        assert all(
            0 < s["decode_ms"] <= s["total_ms"] <= t for s, t in zip(stages, times, strict=True)
        )
        assert worker.ask(op="rss")["peak_rss_mb"] > 20
        assert "error" in worker.ask(op="nonsense")
    finally:
        worker.close()
    assert worker.proc.returncode == 0


def test_the_recipe_timing_script_runs(tiny_bundle: Path) -> None:
    """bench.recipes on the tiny bundle, two rounds: every figure is there (timings are the
    lead's to take on a quiet machine)."""
    from bench.recipes import measure

    figures = measure(tiny_bundle, rounds=2)
    assert set(figures["window_ms"]) == {
        "v1 feature image",
        "v2 recognised (engine's path)",
        "v2 generic graph",
    }
    assert set(figures["request_ms"]) == {"v1 5 s", "v2 5 s", "v1 25 s", "v2 25 s"}
    assert len(figures["recipe_graph_window_ms"]) == len(list((REPO / "recipes").glob("*.json")))
    assert all(v > 0 for part in figures.values() for v in part.values())
