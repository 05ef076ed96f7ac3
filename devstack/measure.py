"""Measure the local pipeline: handler overhead per event and upload → verdict latency.

    python -m devstack.measure [--uploads 30] [--bundle build/models/demo]

N recordings (the shipped samples in turn, each with its transcript) go one after the other
through the same path as `make demo`: ``POST /uploads`` on the API under uvicorn, the
presigned POST over HTTP, moto's S3 notification, the starter, the work queue, the
classifier, the local Transcribe stand-in, the Transcribe event, the classifier again, and
``GET /jobs/{id}`` until DONE. After a warm-up upload (not counted), it reports, in
milliseconds:

* per handler and trigger: wall time, time inside the engine (``classify``), and the
  overhead = wall − inference (everything but model inference: event parsing, the job
  store, S3, SQS, EventBridge, Transcribe calls to moto over HTTP, Powertools);
* upload completed (the presigned POST answered) → preliminary / final verdict recorded
  (the job's own timestamps).

Nothing here is asserted: the numbers go to docs/PERFORMANCE.md with this command.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SAMPLES = ["ko-help-16k.wav", "ko-regular-22k.wav", "ko-robbery-44k-stereo.wav"]


def _stats(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"p50 {statistics.median(ordered):6.1f}  p95 {p95:6.1f}  max {ordered[-1]:6.1f}"
        f"  (n={len(ordered)})"
    )


def _epoch(moment: str) -> float:
    return datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp()


def run(uploads: int, bundle: Path, out: Any) -> dict[str, Any]:
    import httpx

    from devstack.api_server import ApiServer
    from devstack.config import LocalConfig
    from devstack.stack import LocalStack
    from devstack.transcribe import StandInOutcome

    transcripts = json.loads((REPO / "samples" / "transcripts.json").read_text("utf-8"))
    results: dict[str, Any] = {"uploads": uploads, "bundle": str(bundle), "jobs": []}
    with (
        LocalStack(LocalConfig(bundle=str(bundle), sweep_interval_s=3600)) as stack,
        ApiServer() as api,
        httpx.Client(base_url=api.url, timeout=30) as client,
    ):
        results["warm"] = stack.warm()
        for i in range(uploads + 1):
            name = SAMPLES[i % len(SAMPLES)]
            audio = (REPO / "samples" / name).read_bytes()
            created = client.post("/uploads", json={"filename": name}).raise_for_status().json()
            stack.standin.plan(created["job_id"], StandInOutcome.completed(transcripts[name]))
            post = created["upload"]
            before = len(stack.invocations)
            httpx.post(
                post["url"],
                data=post["fields"],
                files={"file": (name, audio, post["content_type"])},
            ).raise_for_status()
            uploaded = time.time()
            while True:
                view = client.get(f"/jobs/{created['job_id']}").raise_for_status().json()
                if view["is_final"]:
                    break
                time.sleep(0.1)  # the latencies come from the job's own timestamps
            stack.wait_idle(settle_s=0.1)
            if i == 0:
                continue  # warm-up: first connections, first inference of each shape
            t = view["timings"]
            results["jobs"].append(
                {
                    "sample": name,
                    "status": view["status"],
                    "upload_to_preliminary_ms": (_epoch(t["preliminary_at"]) - uploaded) * 1000,
                    "upload_to_final_ms": (_epoch(t["final_at"]) - uploaded) * 1000,
                    "invocations": [
                        {
                            "handler": f"{inv.function} ({inv.trigger})",
                            "wall_ms": inv.wall_ms,
                            "inference_ms": inv.inference_ms,
                            "overhead_ms": inv.overhead_ms,
                            "ok": inv.ok,
                        }
                        for inv in stack.invocations[before:]
                        if inv.function != "sweeper"
                    ],
                }
            )
            print(f"  {i:3d}/{uploads} {name}: {view['status']}", file=out, flush=True)
    return results


def report(results: dict[str, Any], out: Any) -> None:
    jobs = results["jobs"]
    by_handler: dict[str, dict[str, list[float]]] = {}
    for job in jobs:
        for inv in job["invocations"]:
            entry = by_handler.setdefault(inv["handler"], {"wall": [], "inf": [], "over": []})
            entry["wall"].append(inv["wall_ms"])
            entry["inf"].append(inv["inference_ms"])
            entry["over"].append(inv["overhead_ms"])
    print(f"{len(jobs)} uploads, bundle {results['bundle']} (ms)", file=out)
    for handler, values in by_handler.items():
        print(f"  {handler}", file=out)
        print(f"    wall       {_stats(values['wall'])}", file=out)
        print(f"    inference  {_stats(values['inf'])}", file=out)
        print(f"    overhead   {_stats(values['over'])}", file=out)
    print("  upload completed → verdict recorded", file=out)
    print(f"    preliminary {_stats([j['upload_to_preliminary_ms'] for j in jobs])}", file=out)
    print(f"    final       {_stats([j['upload_to_final_ms'] for j in jobs])}", file=out)
    failed = [j for j in jobs if j["status"] != "DONE"]
    print(f"  jobs not DONE: {len(failed)}", file=out)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    parser = argparse.ArgumentParser(prog="python -m devstack.measure")
    parser.add_argument("--uploads", type=int, default=30)
    parser.add_argument("--bundle", type=Path, default=REPO / "build" / "models" / "demo")
    parser.add_argument("--json", type=Path, help="write the raw measurements here")
    args = parser.parse_args(argv)
    console = sys.stdout
    log = (REPO / "build" / "local" / "measure.log").open("w", encoding="utf-8")
    sys.stdout = log  # the handlers' logs and metrics
    try:
        results = run(args.uploads, args.bundle, console)
    finally:
        sys.stdout = console
        log.close()
    report(results, console)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
