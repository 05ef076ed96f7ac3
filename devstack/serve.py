"""`make serve`: the HTTP API on 127.0.0.1 (port ``PORT`` or 8000) with its pipeline behind it.

    python -m devstack.serve [--port N] [--bundle DIR [--bundle DIR2 ...]] [--auth cognito]

Local (default): the local stack of devstack/stack.py runs in the same process —
moto as the embedded AWS, the real starter/classifier/sweeper handlers fed by moto's S3 and
EventBridge deliveries, the labelled local Transcribe stand-in (it knows the transcripts of
the shipped samples; any other recording gets an empty transcript) — so the page's
asynchronous flow (``/uploads`` → presigned POST → ``/jobs/{id}``) works offline. The bundle
is ``--bundle``, else ``MODEL_BUNDLE``, else ``build/models/demo``. More ``--bundle DIR``
serve more bundles (``MODEL_BUNDLES``, named by their directory: ``build/models/infant-cry``
is ``infant-cry``); requests and jobs choose one with ``bundle`` (alertfusion.catalog), and
the page switches between them.

Real AWS (``ALERTFUSION_REAL_AWS=1``): no moto, no local handlers. The API uses the
environment as the Lambda function would (``AUDIO_BUCKET``, ``JOBS_TABLE``,
``EVENT_BUS_NAME``, ``WORK_QUEUE_URL``, ``MODEL_BUNDLE``, AWS credentials): uploads then go
to the deployed bucket and the deployed functions process them.

``API_KEY`` (≥ 16 characters), when set, is checked on every route but ``/healthz``.
``--auth cognito``: the end-user routes want a signed-in user's token instead, from a
Cognito user pool in moto with demo users (devstack.cognito); the page signs them in, and
``make token USER=alice`` prints a token (the pool's whereabouts are in
``build/local/serve-<port>.json`` while the server runs).
Handler logs and metrics of the local stack go to ``build/local/serve.log``.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BUNDLE = REPO / "build" / "models" / "demo"
LOG_FILE = REPO / "build" / "local" / "serve.log"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.serve",
        description="The HTTP API on 127.0.0.1 with moto as the embedded AWS (or real AWS).",
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument(
        "--bundle",
        type=Path,
        action="append",
        help="model bundle (default: MODEL_BUNDLE); repeat it to serve several, the first "
        "the default, the others named by their directory",
    )
    parser.add_argument(
        "--auth",
        choices=["api_key", "cognito"],
        default="api_key",
        help="cognito: signed-in users (a local Cognito user pool) instead of the API key",
    )
    return parser.parse_args(argv)


def named_bundles(paths: list[Path]) -> str:
    """MODEL_BUNDLES for the bundles after the first: each named by its directory
    (alertfusion.catalog); ValueError for a name that is not one or is given twice."""
    from alertfusion.catalog import BUNDLE_NAME_PATTERN, DEFAULT_BUNDLE

    names: dict[str, Path] = {}
    for path in paths:
        name = path.resolve().name
        if not re.match(BUNDLE_NAME_PATTERN, name) or name == DEFAULT_BUNDLE:
            raise ValueError(f"--bundle {path}: {name!r} cannot name a bundle")
        if name in names:
            raise ValueError(f"--bundle {path}: a bundle named {name!r} is given already")
        names[name] = path
    return ",".join(f"{name}={path.resolve()}" for name, path in names.items())


def _uvicorn_logging() -> dict[str, Any]:
    """uvicorn's logging, with the access log on stderr (stdout is the handlers' log)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    return config


def _serve(port: int) -> None:
    import uvicorn

    from functions.api.app import create_app
    from functions.api.server import uvicorn_options

    # poll_url and Location on the address the page is served from (never the Host header)
    os.environ.setdefault("PUBLIC_BASE_URL", f"http://127.0.0.1:{port}")
    # stderr: sys.stdout is the log file by now, and uvicorn resolves its streams here
    uvicorn.run(
        create_app(),
        host="127.0.0.1",
        port=port,
        log_config=_uvicorn_logging(),
        **uvicorn_options(),
    )


@contextmanager
def _sign_in_state(stack: Any, port: int, err: Any) -> Iterator[None]:
    """With a user pool: say how to sign in, and leave the pool's whereabouts for
    `make token` (devstack.token) while the server runs."""
    if stack.cognito is None:
        yield
        return
    from devstack.cognito import DEMO_PASSWORD, DEMO_USERS, ServeState

    path = ServeState(port=port, pid=os.getpid(), pool=stack.cognito).write()
    err.write(
        f"  sign-in: Cognito user pool {stack.cognito.pool_id} in moto; demo users "
        f"{', '.join(DEMO_USERS)} (password {DEMO_PASSWORD}); "
        f"a token: make token USER=alice PORT={port}\n"
    )
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads (see the Makefile)
    args = parse_args(argv)
    err = sys.stderr
    bundles: list[Path] = args.bundle or [Path(os.environ.get("MODEL_BUNDLE") or DEFAULT_BUNDLE)]
    try:
        named = named_bundles(bundles[1:])
    except ValueError as exc:
        err.write(f"serve: {exc}\n")
        return 2
    if os.environ.get("ALERTFUSION_REAL_AWS") == "1":
        if args.bundle is not None:
            os.environ["MODEL_BUNDLE"] = str(bundles[0])
        if named:
            os.environ["MODEL_BUNDLES"] = named
        err.write(
            f"alertfusion: http://127.0.0.1:{args.port}/ against real AWS "
            f"(bucket {os.environ.get('AUDIO_BUCKET', '<AUDIO_BUCKET unset>')})\n"
        )
        _serve(args.port)
        return 0

    bundle = bundles[0]
    for each in bundles:
        if not (each / "manifest.json").is_file():
            err.write(
                f"serve: no model bundle at {each} (run `make setup` or `make bundle-demo`; "
                "a recipe's: python -m model_export demo --recipe recipes/NAME.json --out DIR)\n"
            )
            return 2
    from devstack.config import LocalConfig
    from devstack.stack import LocalStack

    LOG_FILE.parent.mkdir(parents=True, exist_ok=True)
    console = sys.stdout
    with LOG_FILE.open("w", encoding="utf-8") as log:
        # Powertools' Logger and metrics write to sys.stdout: the log file, not the terminal
        sys.stdout = log
        try:
            config = LocalConfig(
                bundle=str(bundle),
                stuck_after_seconds=30,
                sweep_interval_s=5,
                auth=args.auth,
                env={"MODEL_BUNDLES": named} if named else {},
            )

            def notes(line: str) -> None:
                err.write(line + "\n")

            with LocalStack(config, on_note=notes) as stack:
                stack.warm()
                key = "set" if os.environ.get("API_KEY") else "none (set API_KEY to require one)"
                err.write(
                    f"alertfusion (local): http://127.0.0.1:{args.port}/  page at /upload\n"
                    f"  moto (embedded AWS) {stack.endpoint_url}; bundle {bundle}"
                    f"{'; also ' + named if named else ''}; API key {key}\n"
                    "  Transcribe is the local stand-in: the shipped samples get their "
                    "transcripts, other recordings an empty one\n"
                    f"  handler logs: {LOG_FILE.relative_to(REPO)}; Ctrl-C stops everything\n"
                )
                with _sign_in_state(stack, args.port, err):
                    _serve(args.port)
        except KeyboardInterrupt:
            pass
        finally:
            sys.stdout = console
    err.write("serve: stopped\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
