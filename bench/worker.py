"""A benchmark worker process: one path, loaded once, timed on request (JSON lines on stdio).

    python -m bench.worker ours|seed LOCATION

Requests (one JSON object per line on stdin), answers on stdout:
    {"op": "latency", "file": F, "n": N, "text": T}
        -> {"ms": [N wall-clock times], "stages": [N stage timings (ours; [] for the seed)]}
    {"op": "throughput", "dir": D, "text": T, "concurrency": C} -> {"seconds": s, "clips": n}
    {"op": "rss"} -> {"peak_rss_mb": m}
    {"op": "exit"}
Each timed call is decode -> verdict on bytes already in memory.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any


def peak_rss_mb() -> float:
    """This process's peak RSS. /proc's VmHWM, not getrusage: Linux carries ru_maxrss over
    exec, so a child forked from a big parent would report the parent's size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _latency(path: Any, request: dict[str, Any]) -> dict[str, Any]:
    data = Path(request["file"]).read_bytes()
    text = request.get("text")
    times, stages = [], []
    for _ in range(int(request["n"])):
        start = time.perf_counter()
        result = path.classify(data, text)
        times.append((time.perf_counter() - start) * 1e3)
        timings = getattr(result, "timings", None)  # the engine's own stage timings
        if timings is not None:
            stages.append(timings.model_dump())
    return {"ms": times, "stages": stages}


def _throughput(path: Any, request: dict[str, Any]) -> dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor

    clips = [p.read_bytes() for p in sorted(Path(request["dir"]).glob("*.wav"))]
    text = request.get("text")
    concurrency = int(request.get("concurrency", 1))
    start = time.perf_counter()
    if concurrency == 1:
        for data in clips:
            path.classify(data, text)
    else:
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(lambda d: path.classify(d, text), clips))
    return {"seconds": time.perf_counter() - start, "clips": len(clips)}


def main(argv: list[str]) -> int:
    from bench.paths import make_path

    name, location = argv[0], argv[1]
    options = json.loads(argv[2]) if len(argv) > 2 else {}
    start = time.perf_counter()
    path = make_path(name, location, **options)
    ready = {"ready": True, "load_ms": (time.perf_counter() - start) * 1e3}
    if hasattr(path, "threads"):
        ready["threads"] = path.threads
    print(json.dumps(ready), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        if op == "exit":
            break
        if op == "latency":
            answer = _latency(path, request)
        elif op == "throughput":
            answer = _throughput(path, request)
        elif op == "rss":
            answer = {"peak_rss_mb": peak_rss_mb()}
        else:
            answer = {"error": f"unknown op {op!r}"}
        print(json.dumps(answer), flush=True)
    path.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
