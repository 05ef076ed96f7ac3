"""`python -m alertfusion delete`: an operator deletes jobs as `DELETE /jobs/{id}` does, by id or
every job of one owner (a person who asks for all their data to go).

Uses the pipeline's environment (AUDIO_BUCKET, JOBS_TABLE, EVENT_BUS_NAME, WORK_QUEUE_URL,
TRANSCRIBE_JOB_PREFIX, AWS credentials). Exit codes: 0 every job is deleted or deleting
(a running Transcribe job is deleted by its completion event or the sweeper); 2 an argument
was refused or a job id is unknown; 1 anything else (AWS trouble).
"""

from __future__ import annotations

import argparse
import json
import re
from typing import TextIO

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2

#: what jobs record as their owner (functions.api.auth.Principal.owner)
OWNER_PATTERN = re.compile(r"^(user:[^\s]{1,255}|apikey:[0-9a-f]{32})$")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "delete",
        help="delete jobs (recording, transcript, result, Transcribe job) by id or owner",
        description="Delete jobs as DELETE /jobs/{id} does: the recording, transcript, result "
        "file and Transcribe job go, the record becomes a tombstone. By id, or every job of "
        "one owner (user:<token subject> or apikey:<digest>, as the job records show). Uses "
        "the pipeline's environment (AUDIO_BUCKET, JOBS_TABLE, EVENT_BUS_NAME, "
        "WORK_QUEUE_URL, TRANSCRIBE_JOB_PREFIX). Exit code 0 when every job is deleted or "
        "deleting, 2 for a refused argument or an unknown id, 1 otherwise.",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--job", nargs="+", metavar="ID", help="job ids")
    which.add_argument("--owner", help="every job of this owner: user:<sub> or apikey:<digest>")
    parser.add_argument("--dry-run", action="store_true", help="list the jobs; delete nothing")
    parser.add_argument("--json", action="store_true", help="print JSON lines")


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from alertfusion.errors import AlertFusionError
    from alertfusion.keys import is_job_id

    if args.owner is not None and not OWNER_PATTERN.match(args.owner):
        err.write(f"error: --owner {args.owner!r}: give user:<token subject> or apikey:<digest>\n")
        return EXIT_BAD_INPUT
    refused = [job_id for job_id in args.job or [] if not is_job_id(job_id)]
    if refused:
        err.write(f"error: not job ids: {', '.join(refused)}\n")
        return EXIT_BAD_INPUT
    try:
        return _run(args, out, err)
    except AlertFusionError as exc:
        err.write(f"error: {exc.code}: {exc.message}\n")
        return EXIT_ERROR


def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from alertfusion.pipeline.context import get_context
    from alertfusion.pipeline.deletion import delete_in

    ctx = get_context()
    job_ids: list[str] = args.job or ctx.store.owned_by(args.owner)
    if args.owner is not None and not job_ids:
        err.write(f"no jobs of {args.owner}\n")
    code = EXIT_OK
    for job_id in job_ids:
        job = ctx.store.get(job_id)
        if job is None:
            _show(out, job_id, "NOT_FOUND", as_json=args.json)
            code = EXIT_BAD_INPUT
            continue
        if not args.dry_run:
            job = delete_in(ctx, job)
        _show(out, job_id, job.status.value, as_json=args.json)
    return code


def _show(out: TextIO, job_id: str, status: str, *, as_json: bool) -> None:
    if as_json:
        out.write(json.dumps({"job_id": job_id, "status": status}) + "\n")
    else:
        out.write(f"{job_id} {status}\n")
