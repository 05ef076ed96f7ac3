"""Handler overhead of the asynchronous pipeline against moto: everything but inference.

    .venv/bin/python -m bench.pipeline_overhead [--events 50] [--mode server|inprocess]

For each of N uploads it times, per event: the starter handler on the S3 event (HeadObject,
header probe, job record, task, StartTranscriptionJob), the audio stage and the finalize
step with a classifier that answers at once (its own time is measured and subtracted), and
one sweeper run over the N jobs. ``server`` runs moto as a real HTTP server on 127.0.0.1
(every AWS call crosses a socket, like the local demo); ``inprocess`` uses ``mock_aws``.
Prints p50/p95/max in milliseconds and the AWS calls each step makes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

REPO = Path(__file__).resolve().parent.parent
REGION = "ap-northeast-2"
BUCKET = "bench-audio"
TABLE = "bench-jobs"


class _Context:
    function_name = "bench"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:bench"
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


class InstantClassifier:
    """Answers at once with a real ClassificationResult; records its own time."""

    def __init__(self) -> None:
        from tests.pipeline_doubles import make_result

        self._make = make_result
        self.seconds = 0.0

    def classify(self, audio: bytes, **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = self._make("help", text=kwargs.get("text"))
        self.seconds += time.perf_counter() - start
        return result


def _setup(session: Any) -> str:
    from alertfusion.jobs import create_jobs_table

    s3 = session.create_client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    create_jobs_table(session.create_client("dynamodb", region_name=REGION), TABLE)
    session.create_client("events", region_name=REGION).create_event_bus(Name="bench-bus")
    queue: str = session.create_client("sqs", region_name=REGION).create_queue(
        QueueName="bench-work"
    )["QueueUrl"]
    return queue


def _event(key: str, size: int, etag: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(
        (REPO / "tests/fixtures/events/s3-object-created.json").read_text(encoding="utf-8")
    )
    record = event["Records"][0]
    record["eventTime"] = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    record["s3"]["bucket"]["name"] = BUCKET
    record["s3"]["object"].update(key=quote_plus(key, safe="/"), size=size, eTag=etag)
    record["s3"]["object"].pop("versionId", None)
    return event


def _stats(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return f"p50 {statistics.median(ordered):7.2f}  p95 {p95:7.2f}  max {ordered[-1]:7.2f}"


def run(events: int, mode: str) -> dict[str, Any]:
    import botocore.session

    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        POWERTOOLS_TRACE_DISABLED="1",
        POWERTOOLS_METRICS_NAMESPACE="alertfusion-bench",
        POWERTOOLS_LOG_LEVEL="WARNING",
        AUDIO_BUCKET=BUCKET,
        JOBS_TABLE=TABLE,
        EVENT_BUS_NAME="bench-bus",
    )
    server = mock = None
    if mode == "server":
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        os.environ["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
    else:
        from moto import mock_aws

        mock = mock_aws()
        mock.start()
    try:
        return _measure(botocore.session.Session(), events)
    finally:
        os.environ.pop("AWS_ENDPOINT_URL", None)
        if server is not None:
            server.stop()
        if mock is not None:
            mock.stop()


def _measure(session: Any, events: int) -> dict[str, Any]:
    import contextlib
    import io

    from alertfusion.keys import new_job_id, transcript_key, upload_key
    from alertfusion.pipeline import finalize_job, get_context, reset_context, run_audio_stage
    from alertfusion.pipeline import sweep as run_sweep
    from functions.starter.app import handler as starter

    queue = _setup(session)
    os.environ["WORK_QUEUE_URL"] = queue
    reset_context(session)
    ctx = get_context()
    calls: Counter[str] = Counter()
    in_aws = [0.0]  # seconds spent inside AWS calls (request out → answer parsed)
    started: list[float] = []

    def before(event_name: str, **_: Any) -> None:
        calls[event_name.split(".", 1)[1]] += 1
        started.append(time.perf_counter())

    def after(**_: Any) -> None:
        in_aws[0] += time.perf_counter() - started.pop()

    for client in (ctx.s3, ctx.store._client, ctx.transcribe, ctx.events, ctx.sqs):
        client.meta.events.register("before-call", before)
        client.meta.events.register("after-call", after)

    audio = (REPO / "samples/ko-help-16k.wav").read_bytes()
    transcript = (REPO / "tests/fixtures/transcribe/asr-output-ko.json").read_bytes()
    s3 = session.create_client("s3", region_name=REGION)
    timings: dict[str, list[float]] = {"starter": [], "audio_stage": [], "finalize": []}
    own: dict[str, list[float]] = {name: [] for name in timings}
    per_step_calls: dict[str, Counter[str]] = {}
    warmup = 5

    def timed(
        name: str, record: bool, classifier: InstantClassifier, step: Any, *args: Any
    ) -> None:
        before_calls = Counter(calls)
        classifier.seconds = 0.0
        in_aws[0] = 0.0
        start = time.perf_counter()
        step(*args)
        elapsed = time.perf_counter() - start - classifier.seconds
        if record:
            timings[name].append(elapsed * 1000)
            own[name].append((elapsed - in_aws[0]) * 1000)
            per_step_calls[name] = Counter(calls) - before_calls

    sink = io.StringIO()  # the EMF metric lines and logs go to stdout: keep the table readable
    for i in range(warmup + events):
        job_id = new_job_id()
        key = upload_key(job_id, "wav")
        put = s3.put_object(Bucket=BUCKET, Key=key, Body=audio, ContentType="audio/wav")
        event = _event(key, len(audio), put["ETag"].strip('"'))
        classifier = InstantClassifier()
        record = i >= warmup
        with contextlib.redirect_stdout(sink):
            timed("starter", record, classifier, starter, event, _Context())
            timed("audio_stage", record, classifier, run_audio_stage, job_id, classifier)
            # the transcript Transcribe would have written (untimed)
            s3.put_object(Bucket=BUCKET, Key=transcript_key(job_id), Body=transcript)
            timed("finalize", record, classifier, finalize_job, job_id, "COMPLETED", classifier)
    with contextlib.redirect_stdout(sink):
        start = time.perf_counter()
        report = run_sweep()
        sweep_ms = (time.perf_counter() - start) * 1000
    return {
        "events": events,
        "timings_ms": timings,
        "own_code_ms": own,
        "calls_per_event": {k: dict(v) for k, v in per_step_calls.items()},
        "sweep_ms": sweep_ms,
        "sweep_checked": report.checked,
        "run_id": str(uuid.uuid4()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--mode", choices=["server", "inprocess"], default="server")
    args = parser.parse_args()
    result = run(args.events, args.mode)
    print(f"moto ({args.mode}), {args.events} uploads, milliseconds per event (inference excluded)")
    for name, values in result["timings_ms"].items():
        calls = sum(result["calls_per_event"][name].values())
        print(f"  {name:12s} total {_stats(values)}   {calls} AWS calls")
        print(f"  {'':12s} own   {_stats(result['own_code_ms'][name])}   (outside AWS calls)")
    print(f"  sweep over {args.events + 5} DONE jobs: {result['sweep_ms']:.1f} ms")


if __name__ == "__main__":
    main()
