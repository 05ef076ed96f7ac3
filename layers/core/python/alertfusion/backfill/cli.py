"""`python -m alertfusion backfill`: start (or dry-run) a backfill over an S3 prefix, watch
it, print its summary; also `--status ID` and `--redrive ID`.

Exit codes: 0 the run succeeded (or the dry run / status answered); 2 the location or an
argument was refused; 1 anything else (the run failed, AWS trouble).
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from alertfusion.backfill.service import BackfillEstimate, BackfillService, BackfillStatus
    from alertfusion.backfill.summary import BackfillSummary

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "backfill",
        help="classify every recording under an S3 prefix (Step Functions Distributed Map)",
        description="Start a backfill of the pipeline's bucket under a prefix, or dry-run it "
        "(object count, audio minutes from the headers, cost) before anything starts. Uses "
        "the pipeline's environment (AUDIO_BUCKET, JOBS_TABLE, BACKFILL_STATE_MACHINE_ARN, "
        "AWS credentials). Exit code 0 when the run succeeded, 2 for a refused location, "
        "1 otherwise.",
    )
    parser.add_argument("location", nargs="?", help="s3://bucket/prefix/ (or a prefix)")
    parser.add_argument("--dry-run", action="store_true", help="estimate only; start nothing")
    parser.add_argument("--wait", action="store_true", help="watch the run until it ends")
    parser.add_argument(
        "--bundle-version",
        help="classify again with this bundle version (the one the classifier serves) and "
        "compare its labels with the jobs' earlier verdicts",
    )
    parser.add_argument("--status", metavar="ID", help="describe a backfill")
    parser.add_argument("--redrive", metavar="ID", help="run a failed backfill's failed batches")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between progress polls")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from alertfusion.backfill.service import service_from_environment
    from alertfusion.errors import HTTP_STATUS, AlertFusionError

    try:
        service = service_from_environment()
        return _run(service, args, out, err)
    except AlertFusionError as exc:
        err.write(f"error: {exc.code}: {exc.message}\n")
        return EXIT_BAD_INPUT if HTTP_STATUS.get(exc.code, 500) < 500 else EXIT_ERROR


def _run(service: BackfillService, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.status:
        status = service.describe(args.status)
        _show_status(status, out, as_json=args.json)
        return EXIT_OK
    if args.redrive:
        service.redrive(args.redrive)
        out.write(f"backfill {args.redrive}: redriven (its failed batches run again)\n")
        return watch(service, args.redrive, out, err, poll=args.poll) if args.wait else EXIT_OK
    if not args.location:
        err.write("error: give s3://bucket/prefix/, --status ID or --redrive ID\n")
        return EXIT_BAD_INPUT
    prefix = service.prefix_of(args.location)
    if args.dry_run:
        estimate = service.estimate(prefix, service.pipeline.transcribe_policy)
        if args.json:
            out.write(estimate.model_dump_json(indent=2) + "\n")
        else:
            out.write("\n".join(estimate_lines(estimate)) + "\n")
        return EXIT_OK
    started = service.start(prefix, args.bundle_version)
    out.write(
        f"backfill {started.backfill_id} started over s3://{started.bucket}/{started.prefix} "
        f"({started.max_concurrency} batches of {started.batch_size} at most at once)\n"
    )
    if not args.wait:
        return EXIT_OK
    return watch(service, started.backfill_id, out, err, poll=args.poll, as_json=args.json)


def watch(
    service: BackfillService,
    backfill_id: str,
    out: TextIO,
    err: TextIO,
    *,
    poll: float = 2.0,
    as_json: bool = False,
) -> int:
    """Poll the run, drawing its progress on `err`, until it ends; then its summary."""
    tty = err.isatty()
    last = ""
    while True:
        status = service.describe(backfill_id)
        line = progress_line(status)
        if line != last:
            err.write(("\r" + line.ljust(78)) if tty else line + "\n")
            err.flush()
            last = line
        if status.status != "RUNNING" and (status.final or status.status != "SUCCEEDED"):
            break
        time.sleep(poll)
    if tty:
        err.write("\n")
    _show_status(status, out, as_json=as_json)
    return EXIT_OK if status.status == "SUCCEEDED" else EXIT_ERROR


def progress_line(status: BackfillStatus) -> str:
    batches = status.batches
    done = status.summary.objects
    if batches is None or batches.total == 0:
        return f"[{'.' * 24}] listing the prefix... {done} objects final"
    finished = batches.succeeded + batches.failed
    filled = round(24 * finished / batches.total)
    return (
        f"[{'#' * filled}{'.' * (24 - filled)}] {finished}/{batches.total} batches, "
        f"{done} objects final, {batches.running} batches running"
    )


def estimate_lines(e: BackfillEstimate) -> list[str]:
    lines = [
        f"dry run: s3://{e.bucket}/{e.prefix} (nothing started)",
        f"  objects        {e.objects} ({e.existing_jobs} already have a job, "
        f"{e.refused} would be refused by the starter's checks)",
        f"  audio          {e.audio_minutes:.1f} minutes from the headers"
        + (f" (headers of {e.probed} read, the rest extrapolated)" if e.extrapolated else ""),
        f"  map            {e.max_concurrency} batches of {e.batch_size} at most at once "
        f"(TRANSCRIBE_POLICY={e.transcribe_policy})",
        f"  cost           USD {e.cost.total:.4f}: "
        + ", ".join(f"{k} {v:.4f}" for k, v in e.cost.by_service.items()),
    ]
    lines += [f"                 ({a})" for a in e.cost.assumptions]
    return lines


def summary_lines(s: BackfillSummary) -> list[str]:
    def counts(values: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in values.items()) or "none"

    lines = [
        f"  objects        {s.objects} in {s.batches} batches",
        f"  jobs           {s.new_jobs} new; what the backfill did: {counts(s.actions)}",
        f"  states         {counts(s.states)}",
        f"  labels         {counts(s.labels)}",
        f"  failures       {counts(s.failures)}",
        f"  Transcribe     {s.transcribe_jobs} jobs started, {s.audio_minutes:.2f} audio minutes",
        f"  cost           USD {s.cost.total:.4f}: "
        + ", ".join(f"{k} {v:.4f}" for k, v in s.cost.by_service.items()),
    ]
    if s.comparison is not None:
        c = s.comparison
        share = f"{c.agreed / c.compared:.1%}" if c.compared else "n/a"
        lines.append(
            f"  comparison     {c.target_version} against {', '.join(c.baseline_versions) or '-'}"
            f": {c.agreed} of {c.compared} agree ({share})"
        )
        labels = sorted({*c.table, *(n for row in c.table.values() for n in row)})
        if labels:
            width = max(9, *(len(label) for label in labels))
            lines.append("    old \\ new   " + " ".join(f"{n:>{width}}" for n in labels))
            for old in labels:
                row = c.table.get(old, {})
                cells = " ".join(f"{row.get(n, 0):>{width}}" for n in labels)
                lines.append(f"    {old:<11} {cells}")
    return lines


def _show_status(status: BackfillStatus, out: TextIO, *, as_json: bool) -> None:
    if as_json:
        out.write(status.model_dump_json(indent=2) + "\n")
        return
    lines = [
        f"backfill {status.backfill_id}: {status.status}"
        + ("" if status.final else " (counts of the batches finished so far)"),
        f"  location       s3://{status.bucket}/{status.prefix}"
        + (f", bundle version {status.bundle_version}" if status.bundle_version else ""),
    ]
    if status.error:
        lines.append(f"  error          {status.error}: {status.cause}")
    lines += summary_lines(status.summary)
    out.write("\n".join(lines) + "\n")
