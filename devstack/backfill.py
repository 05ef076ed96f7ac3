"""`make backfill ARGS="--demo 20"`: a backfill through moto's state-machine interpreter.

    python -m devstack.backfill --demo 20 [--seconds 5] [--bundle DIR] [--policy always|gated]

Starts the local stack (devstack.stack: moto as the embedded AWS, the pipeline's real
handlers, the backfill function and the classifier each in a sandbox process of its own
(devstack.sandbox), the local Transcribe stand-in), uploads N sample recordings under
``archive/demo/`` (the shipped samples in turn, each under its own key), then runs the
state-machine definition CDK deploys (alertfusion.backfill.definition) through moto's
interpreter (gaps filled by devstack.stepfunctions) until every job is final, and prints
the summary; then runs it again over the same prefix and prints a second summary, which
must show 0 new jobs and no new Transcribe job. The backfills are started, watched and
summarised by the same code as ``python -m alertfusion backfill`` (alertfusion.backfill).

Handler logs and EMF metrics go to ``build/local/backfill.log``. Exit status: 0 when both
runs succeeded and the second made no job; 1 otherwise; 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BUNDLE = REPO / "build" / "models" / "demo"
LOG_FILE = REPO / "build" / "local" / "backfill.log"
SAMPLES = REPO / "samples"
DEMO_PREFIX = "archive/demo/"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.backfill",
        description="A backfill over N sample recordings, twice, through moto's "
        "state-machine interpreter.",
    )
    parser.add_argument(
        "--demo", type=int, required=True, metavar="N", help="recordings to upload (1-2000)"
    )
    parser.add_argument(
        "--seconds",
        type=float,
        help="cut every recording to its first SECONDS (the target's five-second recordings)",
    )
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="model bundle")
    parser.add_argument("--policy", choices=["always", "gated"], default="always")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    parser.add_argument("--summary-json", type=Path, help="also write both summaries here")
    args = parser.parse_args(argv)
    if not 1 <= args.demo <= 2000:
        parser.error("--demo takes 1 to 2000 recordings")
    return args


def _first_seconds(data: bytes, seconds: float) -> bytes:
    """The recording's first `seconds`, as a 16-bit PCM WAV at its own rate and channels."""
    import io

    import soundfile

    samples, rate = soundfile.read(io.BytesIO(data), dtype="int16", always_2d=True)
    out = io.BytesIO()
    soundfile.write(out, samples[: int(rate * seconds)], rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def demo_recordings(n: int, seconds: float | None = None) -> list[tuple[str, bytes, str]]:
    """(key, bytes, transcript) of N recordings: the shipped samples in turn (each cut to its
    first `seconds` when given; the stand-in still answers the sample's transcript)."""
    known: dict[str, str] = json.loads((SAMPLES / "transcripts.json").read_text("utf-8"))
    samples = sorted(p for p in SAMPLES.glob("*.wav") if p.name in known)
    audio = {p.name: p.read_bytes() for p in samples}
    if seconds is not None:
        audio = {name: _first_seconds(data, seconds) for name, data in audio.items()}
    out = []
    for i in range(n):
        name = samples[i % len(samples)].name
        out.append((f"{DEMO_PREFIX}{i:05d}-{name}", audio[name], known[name]))
    return out


def run(args: argparse.Namespace, out: TextIO) -> int:
    from alertfusion.backfill.cli import estimate_lines, watch
    from alertfusion.backfill.service import service_from_environment
    from devstack.config import LocalConfig
    from devstack.stack import LocalStack
    from devstack.transcribe import StandInOutcome

    if not (args.bundle / "manifest.json").is_file():
        out.write(f"backfill: no model bundle at {args.bundle} (run `make setup`)\n")
        return 2
    # the classifier in a sandbox process of its own too: the handlers run beside moto's
    # server on both CPUs instead of taking turns with it for one (devstack.handlers)
    config = LocalConfig(
        bundle=str(args.bundle),
        transcribe_policy=args.policy,
        sandboxed=("backfill", "classifier"),
    )
    t0 = time.perf_counter()

    def step(line: str) -> None:
        out.write(f"  {time.perf_counter() - t0:7.2f}s  {line}\n")
        out.flush()

    out.write("alertfusion backfill demo: Step Functions Distributed Map in moto's interpreter\n")
    summaries: dict[str, Any] = {}
    with LocalStack(config) as stack:
        step(f"moto listening on {stack.endpoint_url}; state machine and pipeline created")
        warm = stack.warm()
        step(f"engine loaded in {warm['engine_ms']:.0f} ms ({args.bundle.name})")
        s3 = stack.client("s3")
        for key, data, text in demo_recordings(args.demo, args.seconds):
            s3.put_object(Bucket=config.bucket, Key=key, Body=data, ContentType="audio/wav")
            stack.standin.plan(key, StandInOutcome.completed(text))
        step(f"{args.demo} recordings uploaded under s3://{config.bucket}/{DEMO_PREFIX}")
        service = service_from_environment()
        out.write("\n".join(estimate_lines(service.estimate(DEMO_PREFIX, args.policy))) + "\n")
        codes = []
        for run_name in ("first run", "second run (same prefix)"):
            transcribe_before = len(stack.transcribe_job_names())
            started = service.start(DEMO_PREFIX, None)
            step(f"{run_name}: backfill {started.backfill_id} started")
            run_t0 = time.perf_counter()
            code = watch(service, started.backfill_id, out, sys.stderr, poll=1.0)
            elapsed = time.perf_counter() - run_t0
            status = service.describe(started.backfill_id)
            new_transcribe = len(stack.transcribe_job_names()) - transcribe_before
            step(
                f"{run_name}: {status.status} in {elapsed:.1f} s; {status.summary.new_jobs} new "
                f"jobs, {new_transcribe} new Transcribe jobs"
            )
            summaries[run_name] = {
                "seconds": round(elapsed, 2),
                "new_transcribe_jobs": new_transcribe,
                "status": status.model_dump(mode="json"),
            }
            codes.append(code)
        if stack.pump_errors:
            out.write(f"pump errors: {stack.pump_errors}\n")
    second = summaries["second run (same prefix)"]
    ok = (
        codes == [0, 0]
        and second["status"]["summary"]["new_jobs"] == 0
        and second["new_transcribe_jobs"] == 0
    )
    if args.summary_json:
        args.summary_json.write_text(json.dumps(summaries, indent=2), encoding="utf-8")
    out.write(
        "both runs succeeded; the second made no job and no Transcribe job\n"
        if ok
        else "backfill demo: FAILED (see above and the log)\n"
    )
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    args = parse_args(argv)
    console = sys.stdout
    LOG_FILE.parent.mkdir(parents=True, exist_ok=True)
    # Powertools' Logger and metrics print to sys.stdout: they go to the log file
    with LOG_FILE.open("w", encoding="utf-8") as log:
        sys.stdout = log
        try:
            code = run(args, console)
        except KeyboardInterrupt:
            code = 1
        finally:
            sys.stdout = console
    console.write(f"handler logs and metrics: {LOG_FILE.relative_to(REPO)}\n")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
