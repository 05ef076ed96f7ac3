"""`python -m bench sessions`: the ONNX Runtime options and schedules the engine's defaults come
from, measured on this machine with the int8 bundle. Writes build/bench/sessions.json.

* models: each model alone, 1 vs 2 intra-op threads, batch 1 and 5, spinning on/off;
* schedules: whole requests (gate off, ~20-token text) with the engine's schedules;
* gate: the gate on, with and without starting the text model speculatively;
* creation: session creation per graph optimisation level and memory-reuse planning, and whole
  cold starts (fresh processes) with the three sessions created one after the other vs on two
  threads;
* memory: peak RSS and latency of fresh workers per arena / memory-pattern setting.
Configurations are interleaved in rounds so that they share the machine's conditions.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.clips import BENCH_TEXT, REPO, write_clips
from bench.paths import child_env
from bench.run import DEMO_BUNDLE, OUT_DIR, Worker, load_now, log, machine, summary


def _median_ms(fn: Any, n: int) -> float:
    fn()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return round(statistics.median(times), 2)


def models(bundle: Path, rounds: int) -> dict[str, Any]:
    from alertfusion.manifest import Manifest
    from alertfusion.sessions import SessionOptions, create_session
    from alertfusion.text import TextEncoder

    manifest = Manifest.load(bundle / "manifest.json")
    encoded = TextEncoder.from_file(bundle / "tokenizer.json", max_len=60).encode(BENCH_TEXT)
    assert encoded is not None
    rng = np.random.default_rng(0)
    images = {b: rng.standard_normal((b, 1, 192, 64)).astype(np.float32) for b in (1, 5)}
    configs = {
        "1 thread": SessionOptions(intra_op_threads=1),
        "2 threads": SessionOptions(intra_op_threads=2),
        "2 threads, spinning": SessionOptions(intra_op_threads=2, allow_spinning=True),
    }
    sessions = {
        (label, name): create_session(bundle / getattr(manifest.models, name).file, options)
        for label, options in configs.items()
        for name in ("audio_binary", "text")
    }
    results: dict[str, dict[str, list[float]]] = {label: {} for label in configs}
    for _ in range(rounds):
        for label in configs:
            dense = sessions[(label, "audio_binary")]
            for b, x in images.items():
                key = f"densenet_batch{b}_ms"
                ms = _median_ms(lambda x=x, s=dense: s.run(None, {"image": x}), 10)
                results[label].setdefault(key, []).append(ms)
            bert = sessions[(label, "text")]
            key = f"bert_{encoded.n_tokens}_tokens_ms"
            ms = _median_ms(lambda s=bert: s.run(None, encoded.feeds()), 10)
            results[label].setdefault(key, []).append(ms)
    return {
        label: {k: round(statistics.median(v), 2) for k, v in values.items()}
        for label, values in results.items()
    }


def schedules(bundle: Path, clips: dict[str, Path], rounds: int) -> dict[str, Any]:
    from alertfusion.engine import Engine, Tuning
    from alertfusion.sessions import SessionOptions

    configs = {
        "concurrent, 1 thread/session (default)": Tuning(),
        "concurrent, 2 threads/session": Tuning(session=SessionOptions(intra_op_threads=2)),
        "sequential, 2 threads/session": Tuning(
            concurrent=False, session=SessionOptions(intra_op_threads=2)
        ),
        "sequential, 1 thread/session": Tuning(
            concurrent=False, session=SessionOptions(intra_op_threads=1)
        ),
    }
    engines = {
        label: Engine.from_bundle(bundle, gate="none", tuning=t) for label, t in configs.items()
    }
    data = {c: clips[c].read_bytes() for c in ("clip_5s", "clip_25s")}
    times: dict[str, dict[str, list[float]]] = {label: {c: [] for c in data} for label in configs}
    for engine in engines.values():
        engine.warm_up()
        for d in data.values():
            engine.classify(d, text=BENCH_TEXT)
    for _ in range(rounds):
        for label, engine in engines.items():
            for clip, d in data.items():
                for _ in range(6 if clip == "clip_5s" else 3):
                    start = time.perf_counter()
                    engine.classify(d, text=BENCH_TEXT)
                    times[label][clip].append((time.perf_counter() - start) * 1e3)
    for engine in engines.values():
        engine.close()
    return {
        label: {clip: summary(values) for clip, values in per.items()}
        for label, per in times.items()
    }


def gate(bundle: Path, clips: dict[str, Path], rounds: int) -> dict[str, Any]:
    """Gate on: latency and CPU time per request with and without the speculative text run,
    on a recording the gate stops and on one it passes."""
    from alertfusion.engine import Engine, Tuning

    engines = {
        "text after the gate (default)": Engine.from_bundle(bundle, gate="binary"),
        "speculative text": Engine.from_bundle(
            bundle, gate="binary", tuning=Tuning(speculative_text=True)
        ),
    }
    candidates = [
        clips["clip_5s"],
        *sorted((REPO / "samples").glob("*.wav")),
        REPO / "tests" / "fixtures" / "audio" / "silence-3s.wav",
    ]
    probe = engines["text after the gate (default)"]
    probe.warm_up()
    stopped = passed = None
    for path in candidates:
        decided = probe.classify(path, text=BENCH_TEXT).decided_by
        if decided == "gate" and stopped is None:
            stopped = path
        if decided != "gate" and passed is None:
            passed = path
    cases = {k: v for k, v in (("gate stops it", stopped), ("gate passes it", passed)) if v}
    out: dict[str, Any] = {"files": {k: v.name for k, v in cases.items()}}
    wall: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    for engine in engines.values():
        engine.warm_up()
    for _ in range(rounds):
        for label, engine in engines.items():
            for case, path in cases.items():
                data = path.read_bytes()
                engine.classify(data, text=BENCH_TEXT)
                for _ in range(5):
                    c0, w0 = time.process_time(), time.perf_counter()
                    engine.classify(data, text=BENCH_TEXT)
                    wall.setdefault((label, case), []).append((time.perf_counter() - w0) * 1e3)
                    cpu.setdefault((label, case), []).append((time.process_time() - c0) * 1e3)
    for label in engines:
        out[label] = {
            case: {
                "p50_ms": round(statistics.median(wall[(label, case)]), 2),
                "cpu_ms": round(statistics.median(cpu[(label, case)]), 2),
            }
            for case in cases
        }
    for engine in engines.values():
        engine.close()
    return out


def creation(bundle: Path, clip: Path, repeats: int) -> dict[str, Any]:
    """Session creation (ms) per optimisation level and reuse planning; then one request's
    model time with that session, to show what a faster creation costs at run time."""
    from alertfusion.manifest import Manifest
    from alertfusion.sessions import SessionOptions, create_session

    manifest = Manifest.load(bundle / "manifest.json")
    image = np.random.default_rng(0).standard_normal((1, 1, 192, 64)).astype(np.float32)
    out: dict[str, Any] = {}
    for name in ("audio_binary", "text"):
        path = bundle / getattr(manifest.models, name).file
        for level in ("all", "extended", "basic"):
            for reuse in (True, False):
                options = SessionOptions(optimization=level, mem_reuse=reuse)
                made = []
                session = None
                for _ in range(repeats):
                    start = time.perf_counter()
                    session = create_session(path, options)
                    made.append((time.perf_counter() - start) * 1e3)
                key = f"{name}, {level}, mem_reuse={'on' if reuse else 'off'}"
                row: dict[str, float] = {"create_ms": round(statistics.median(made), 1)}
                if name == "audio_binary":
                    row["run_ms"] = _median_ms(lambda s=session: s.run(None, {"image": image}), 20)
                out[key] = row
    # whole cold starts in fresh processes, alternating
    for mode in ("sequential", "parallel"):
        out[f"cold start, sessions {mode}"] = {"cold_start_ms": [], "sessions_ms": []}
    for _ in range(repeats * 2):
        for mode in ("sequential", "parallel"):
            extra = ["sequential"] if mode == "sequential" else []
            start = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "bench.cold", "ours", str(bundle), str(clip), BENCH_TEXT]
                + extra,
                cwd=REPO,
                env=child_env("ours"),
                capture_output=True,
                text=True,
                check=True,
            )
            answer = json.loads(done.stdout.strip().splitlines()[-1])
            samples = out[f"cold start, sessions {mode}"]
            samples["cold_start_ms"].append((answer["verdict_at"] - start) * 1e3)
            samples["sessions_ms"].append(answer["phases"]["sessions_ms"])
    for mode in ("sequential", "parallel"):
        samples = out[f"cold start, sessions {mode}"]
        out[f"cold start, sessions {mode}"] = {
            k: round(statistics.median(v), 1) for k, v in samples.items()
        }
    return out


def memory(bundle: Path, clips: dict[str, Path]) -> dict[str, Any]:
    configs = {
        "arena on, no memory patterns, no reuse planning (default)": {},
        "memory patterns on": {"mem_pattern": True},
        "reuse planning on": {"mem_reuse": True},
        "arena off": {"cpu_mem_arena": False},
    }
    out = {}
    for label, session in configs.items():
        worker = Worker("ours", bundle, {"session": session})
        try:
            times = []
            for clip in ("clip_5s", "clip_25s"):
                times.append(
                    worker.ask(op="latency", file=str(clips[clip]), n=15, text=BENCH_TEXT)["ms"]
                )
            rss = worker.ask(op="rss")["peak_rss_mb"]
        finally:
            worker.close()
        out[label] = {
            "peak_rss_mb": round(rss, 1),
            "clip_5s_p50_ms": round(statistics.median(times[0][3:]), 2),
            "clip_25s_p50_ms": round(statistics.median(times[1][3:]), 2),
        }
    return out


def main(args: Any) -> int:
    bundle = Path(args.bundle or DEMO_BUNDLE).resolve()
    if not (bundle / "manifest.json").is_file():
        raise SystemExit(f"no model bundle at {bundle}: run `make setup` (or pass --bundle)")
    clips = write_clips(OUT_DIR / "clips")
    report: dict[str, Any] = {"machine": machine(), "load_at_start": load_now()}
    log("sessions: models alone")
    report["models"] = models(bundle, args.rounds)
    log("sessions: schedules")
    report["schedules"] = schedules(bundle, clips, args.rounds)
    log("sessions: gate and speculative text")
    report["gate"] = gate(bundle, clips, args.rounds)
    log("sessions: creation")
    report["creation"] = creation(bundle, clips["clip_5s"], 3)
    log("sessions: memory options")
    report["memory"] = memory(bundle, clips)
    report["load_at_end"] = load_now()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2, ensure_ascii=False))
    print(f"\nreport: {out}", file=sys.stderr)
    return 0
