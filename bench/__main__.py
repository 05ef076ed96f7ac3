"""`python -m bench [run|sessions|stt]`: the seed path against this engine, and the session tuning.

python -m bench                 # = run: build/bench/report.json + a table
python -m bench sessions        # ONNX Runtime options measured: build/bench/sessions.json
python -m bench stt             # speech-to-text RTF, cold start, memory, cost (bench.stt)
"""

from __future__ import annotations

import os

# before numpy is imported anywhere in this process (see alertfusion.engine)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    from bench.run import OUT_DIR

    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser("run", help="seed path vs engine (the default)")
    sessions = commands.add_parser("sessions", help="ONNX Runtime options, measured")
    for p in (parser, run):
        p.add_argument("--bundle", help="int8 bundle (default build/models/demo)")
        p.add_argument("--checkpoints", help="its source checkpoints (default: from the manifest)")
        p.add_argument(
            "--fp32-bundle", help="fp32 bundle of the same checkpoints (built if absent)"
        )
        p.add_argument("--runs", type=int, default=60, help="timed 5 s requests of ours")
        p.add_argument("--cold-runs", type=int, default=3, help="cold starts per path")
        p.add_argument("--skip-fidelity", action="store_true")
        p.add_argument("--out", default=str(OUT_DIR / "report.json"))
    stt = commands.add_parser("stt", help="speech-to-text in the bundle, measured")
    from bench.stt import add_arguments as stt_arguments

    stt_arguments(stt)
    sessions.add_argument("--bundle", help="int8 bundle (default build/models/demo)")
    sessions.add_argument("--rounds", type=int, default=5)
    sessions.add_argument("--out", default=str(OUT_DIR / "sessions.json"))
    args = parser.parse_args(argv)
    if args.command == "stt":
        from bench.stt import main as stt_main

        return stt_main(args)
    if args.command == "sessions":
        from bench.sessions import main as sessions_main

        return sessions_main(args)
    from bench.run import main as run_main

    return run_main(args)


if __name__ == "__main__":
    sys.exit(main())
