"""The HTTP API's own costs: cold start of light routes, and the layer's overhead on /predict.

    .venv/bin/python -m bench.api [--bundle build/models/demo] [--cold-runs 15]
                                  [--requests 200] [--out build/bench/api.json]

* **cold start**: a fresh Python process imports ``functions.api.app`` and answers one
  API Gateway (HTTP API v2) event through the Mangum handler; the time runs from spawning
  the process to reading its answer on the pipe (interpreter start included). The child's
  CPU time is reported beside it: on a busy machine the wall time mostly measures the
  other processes. ``/healthz``
  needs nothing else; ``/jobs/{id}`` reads a job from DynamoDB (moto as a real HTTP server
  on 127.0.0.1, so botocore's import, client creation and one request are in the number).
  ``jobs`` runs on botocore's data trimmed as the image trims it (functions/slim_botocore.py,
  applied to a copy of this venv's botocore put first on the child's path);
  ``jobs_full_botocore`` beside it on the venv's untrimmed botocore, as ``make serve`` runs.
  One discarded run first, so every measured run finds the bytecode cache warm, as a
  container image ships it; then the three are run in turn, round by round.
* **overhead on /predict**: the REST (v1) event of a 5 s WAV (44.1 kHz mono, 441 kB, base64
  in the event) plus a transcript through the Mangum handler, in process; the engine's own
  time inside the request (the real engine, timed around ``classify``) is subtracted. Also
  measured directly with a classifier that answers a precomputed result at once.

Targets (issue 5): cold start <= 400 ms, overhead <= 5 ms (p50 reported; p95 beside it).
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BUNDLE = REPO / "build" / "models" / "demo"
DEFAULT_OUT = REPO / "build" / "bench" / "api.json"
IMAGE_SITE = REPO / "build" / "bench" / "api-image-site"
REGION = "ap-northeast-2"
BUCKET = "bench-api-audio"
TABLE = "bench-api-jobs"
BOUNDARY = "----alertfusionBenchBoundary"

CHILD = r"""
import json, sys, time
event = json.loads(sys.stdin.readline())
started = time.perf_counter()
from functions.api.app import handler
imported = time.perf_counter()
out = handler(event, None)
answered = time.perf_counter()
heavy = [m for m in ("numpy", "onnxruntime", "av", "soundfile", "tokenizers") if m in sys.modules]
sys.stdout.write(json.dumps({
    "status": out["statusCode"], "heavy": heavy,
    "import_ms": (imported - started) * 1000, "request_ms": (answered - imported) * 1000,
    "cpu_ms": time.process_time() * 1000,
}) + "\n")
sys.stdout.flush()
"""


def _stats(values_ms: list[float]) -> dict[str, float]:
    ordered = sorted(values_ms)
    p = lambda q: ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]  # noqa: E731
    return {
        "n": len(ordered),
        "min": round(ordered[0], 2),
        "p50": round(statistics.median(ordered), 2),
        "p90": round(p(0.90), 2),
        "p95": round(p(0.95), 2),
        "max": round(ordered[-1], 2),
    }


def _http_event(method: str, path: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(
        (REPO / "tests/fixtures/events/apigw-http-predict-multipart.json").read_text("utf-8")
    )
    event.pop("body", None)
    event["isBase64Encoded"] = False
    event["rawPath"] = path
    event["routeKey"] = "$default"
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["http"]["path"] = path
    event["headers"] = {
        k: v for k, v in event["headers"].items() if k not in ("content-type", "content-length")
    }
    return event


def _cold_once(event: dict[str, Any], env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        cwd=REPO,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(json.dumps(event) + "\n")
    child.stdin.flush()
    line = child.stdout.readline()
    elapsed = (time.perf_counter() - started) * 1000
    child.stdin.close()
    child.wait(timeout=60)
    if not line:
        raise RuntimeError("the child process answered nothing")
    report: dict[str, Any] = json.loads(line)
    return elapsed, report


def _cold(variants: dict[str, tuple[dict[str, Any], dict[str, str]]], runs: int) -> dict[str, Any]:
    """Cold runs of each variant (name -> (event, environment)), interleaved round by
    round so that a machine getting slower or faster during the run shifts them alike."""
    for event, env in variants.values():
        _cold_once(event, env)  # bytecode cache, page cache
    measured: dict[str, list[tuple[float, dict[str, Any]]]] = {name: [] for name in variants}
    for _ in range(runs):
        for name, (event, env) in variants.items():
            measured[name].append(_cold_once(event, env))
    out: dict[str, Any] = {}
    for name, runs_of in measured.items():
        times = [elapsed for elapsed, _ in runs_of]
        reports = [report for _, report in runs_of]
        out[name] = {
            # spawn -> answer read by the parent: what the target is about
            "ms": _stats(times),
            # inside the child: importing the app, then the first request (clients included)
            "import_ms": _stats([r["import_ms"] for r in reports]),
            "first_request_ms": _stats([r["request_ms"] for r in reports]),
            # CPU time of the child until it answered (interpreter start included): what the
            # wall time would be on an idle CPU, since a cold start is single-threaded
            "cpu_ms": _stats([r["cpu_ms"] for r in reports]),
            "statuses": sorted({r["status"] for r in reports}),
            "heavy_modules_loaded": sorted({m for r in reports for m in r["heavy"]}),
        }
    return out


def cold_start(runs: int) -> dict[str, Any]:
    """The cold paths (moto as a real server for /jobs), interleaved."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise

    base_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "API_KEY", "MODEL_"))
    }
    # the discarded first run must be able to write the bytecode cache (an image ships it
    # compiled): with PYTHONDONTWRITEBYTECODE inherited, every run would compile the app
    base_env.pop("PYTHONDONTWRITEBYTECODE", None)
    base_env.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
    )
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        env = {
            **base_env,
            "AWS_ENDPOINT_URL": endpoint,
            "AUDIO_BUCKET": BUCKET,
            "JOBS_TABLE": TABLE,
            "EVENT_BUS_NAME": "bench-bus",
            "WORK_QUEUE_URL": f"{endpoint}/123456789012/bench-work",
        }
        job_id = _create_job(endpoint)
        jobs = _http_event("GET", f"/jobs/{job_id}")
        image_site = _image_botocore()
        path = os.pathsep.join(p for p in (str(image_site), env.get("PYTHONPATH")) if p)
        out = _cold(
            {
                "healthz": (_http_event("GET", "/healthz"), base_env),
                "jobs": (jobs, {**env, "PYTHONPATH": path}),
                "jobs_full_botocore": (jobs, env),
            },
            runs,
        )
        out["jobs"]["botocore"] = str(image_site / "botocore")
    finally:
        server.stop()
    return out


def _image_botocore() -> Path:
    """A directory holding a copy of this venv's botocore, trimmed by the image's own build
    step (functions/slim_botocore.py); first on a child's path, it is the botocore imported."""
    import shutil

    import botocore

    from functions.slim_botocore import slim

    site = IMAGE_SITE
    shutil.rmtree(site, ignore_errors=True)
    site.mkdir(parents=True)
    # copy2 keeps the mtimes, so the copied bytecode stays valid: as warm as the image's
    shutil.copytree(Path(botocore.__file__).parent, site / "botocore")
    slim(site)
    return site


def _create_job(endpoint: str) -> str:
    import boto3

    from alertfusion.jobs import JobStore, create_jobs_table
    from alertfusion.keys import new_job_id, upload_key

    session = boto3.session.Session(
        aws_access_key_id="bench", aws_secret_access_key="bench", region_name=REGION
    )
    ddb = session.client("dynamodb", endpoint_url=endpoint)
    create_jobs_table(ddb, TABLE)
    job_id = new_job_id()
    JobStore(TABLE, ddb).create_pending(job_id, object_key=upload_key(job_id, "wav"))
    return job_id


# -- overhead -----------------------------------------------------------------------------------


def _wav_5s() -> bytes:
    import io

    import numpy as np
    import soundfile as sf

    rate = 44_100
    t = np.arange(5 * rate) / rate
    rng = np.random.default_rng(5)
    y = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.02 * rng.standard_normal(len(t))
    buf = io.BytesIO()
    sf.write(buf, y.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _predict_event(audio: bytes, text: str) -> dict[str, Any]:
    body = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="audio_file"; '
        f'filename="bench.wav"\r\nContent-Type: audio/wav\r\n\r\n'
    ).encode() + audio
    body += (
        f'\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name="text_input"\r\n\r\n'
    ).encode() + text.encode("utf-8")
    body += f"\r\n--{BOUNDARY}--\r\n".encode()
    event: dict[str, Any] = json.loads(
        (REPO / "tests/fixtures/events/apigw-rest-predict-multipart.json").read_text("utf-8")
    )
    content_type = f"multipart/form-data; boundary={BOUNDARY}"
    event["headers"]["Content-Type"] = content_type
    event["multiValueHeaders"]["Content-Type"] = [content_type]
    event["body"] = base64.b64encode(body).decode("ascii")
    event["isBase64Encoded"] = True
    return event


class _Timed:
    """The real engine, with the time of each classify call recorded."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.last_ms = 0.0

    @property
    def manifest(self) -> Any:
        return self.engine.manifest

    def classify(self, audio: bytes, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.engine.classify(audio, **kwargs)
        finally:
            self.last_ms = (time.perf_counter() - started) * 1000


class _Instant:
    """Answers a precomputed result at once (its own time is ~microseconds)."""

    def __init__(self, result: Any) -> None:
        self.result = result
        self.last_ms = 0.0

    def classify(self, audio: bytes, **kwargs: Any) -> Any:
        return self.result


def _provider(classifier: Any) -> Any:
    """A dependency without parameters (FastAPI would read parameters as query fields)."""
    return lambda: lambda: classifier


def overhead(bundle: Path, requests: int) -> dict[str, Any]:
    from mangum import Mangum

    from alertfusion.engine import Engine
    from functions.api.app import create_app
    from functions.api.deps import get_classifier_provider
    from functions.api.settings import ApiSettings

    class Context:
        aws_request_id = "bench"

    from functions.api.log import logger

    # the access log line is part of the layer's cost (INFO, as deployed): keep writing it,
    # to /dev/null instead of the terminal
    handler_stream = logger.registered_handler
    if isinstance(handler_stream, logging.StreamHandler):
        handler_stream.setStream(open(os.devnull, "w"))
    audio = _wav_5s()
    text = "도와주세요 여기 사람이 쓰러졌어요"
    event = _predict_event(audio, text)
    engine = Engine.from_bundle(bundle)
    engine.warm_up()
    out: dict[str, Any] = {
        "audio_bytes": len(audio),
        "event_bytes": len(json.dumps(event)),
        "bundle": str(bundle),
        "bundle_version": engine.manifest.bundle_version,
    }
    for name, classifier in (
        ("real_engine_minus_engine_time", _Timed(engine)),
        ("instant_classifier", _Instant(engine.classify(audio, text=text))),
    ):
        app = create_app(ApiSettings.model_validate({}))
        app.dependency_overrides[get_classifier_provider] = _provider(classifier)
        handler = Mangum(app, lifespan="off")
        for _ in range(max(10, requests // 10)):  # warm up: imports, sessions, caches
            handler(event, Context())  # type: ignore[arg-type]  # minimal LambdaContext
        layer_ms, total_ms, engine_ms = [], [], []
        for _ in range(requests):
            started = time.perf_counter()
            answer = handler(event, Context())  # type: ignore[arg-type]  # minimal LambdaContext
            total = (time.perf_counter() - started) * 1000
            if answer["statusCode"] != 200:
                raise RuntimeError(f"/predict answered {answer['statusCode']}: {answer['body']}")
            total_ms.append(total)
            engine_ms.append(classifier.last_ms)
            layer_ms.append(total - classifier.last_ms)
        out[name] = {
            "overhead_ms": _stats(layer_ms),
            "request_ms": _stats(total_ms),
            "engine_ms": _stats(engine_ms),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    parser.add_argument("--cold-runs", type=int, default=15)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--skip-overhead", action="store_true")
    args = parser.parse_args(argv)

    report: dict[str, Any] = {"cold_start": cold_start(args.cold_runs)}
    if not args.skip_overhead:
        if not (args.bundle / "manifest.json").exists():
            parser.error(f"no bundle at {args.bundle} (make bundle-demo, or --bundle DIR)")
        report["predict_overhead"] = overhead(args.bundle, args.requests)
    report["load_average"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
