"""Real process death: the handlers run in child processes that are killed with SIGKILL in
the middle of their work, against a moto server in a process of its own (its state
survives, as AWS's would); then the retries converge: nothing lost, no duplicate
Transcribe job, no duplicate alert."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alertfusion.keys import new_job_id, transcript_key
from devstack.child import ChildInvocation
from devstack.config import LocalConfig
from devstack.resources import Resources
from tests.conftest import FIXTURES
from tests.e2e.conftest import TRANSCRIPTS, sample
from tests.e2e.test_faults import emergency_sample

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CONFIG = LocalConfig()


@pytest.fixture
def moto_process(tmp_path: Path) -> Iterator[str]:
    """`python -m moto.server` in its own process on a free port; its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (tmp_path / "moto.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the moto server did not start") from None
            time.sleep(0.1)
    try:
        yield url
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        log.close()


class World:
    """The pipeline's resources on the moto process, and the queues' messages as Lambda's
    event sources would hand them over."""

    def __init__(self, url: str) -> None:
        import boto3

        session = boto3.session.Session(
            aws_access_key_id="local", aws_secret_access_key="local", region_name=CONFIG.region
        )
        self.clients: dict[str, Any] = {}

        def client(service: str) -> Any:
            if service not in self.clients:
                self.clients[service] = session.client(service, endpoint_url=url)
            return self.clients[service]

        self.client = client
        self.resources = Resources(client, CONFIG)
        self.resources.create()
        self.url = url

    def env(self, bundle: Path) -> dict[str, str]:
        r = self.resources
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_REGION": CONFIG.region,
            "AWS_DEFAULT_REGION": CONFIG.region,
            "AUDIO_BUCKET": CONFIG.bucket,
            "JOBS_TABLE": CONFIG.table,
            "EVENT_BUS_NAME": CONFIG.bus,
            "WORK_QUEUE_URL": r.queues["work"],
            "TRANSCRIBE_JOB_PREFIX": CONFIG.transcribe_job_prefix,
            "MODEL_BUNDLE": str(bundle),
            "FUSION_GATE": "none",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_NAMESPACE": "alertfusion-tests",
        }

    def receive(self, queue: str, *, wait: float = 10.0) -> list[dict[str, Any]]:
        sqs, url = self.client("sqs"), self.resources.queues[queue]
        deadline = time.monotonic() + wait
        while True:
            got = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=1
            ).get("Messages", [])
            if got or time.monotonic() > deadline:
                return list(got)

    def delete(self, queue: str, message: dict[str, Any]) -> None:
        self.client("sqs").delete_message(
            QueueUrl=self.resources.queues[queue], ReceiptHandle=message["ReceiptHandle"]
        )

    def sqs_event(self, message: dict[str, Any]) -> dict[str, Any]:
        arn = self.resources.queue_arn(self.resources.queues["work"])
        return {
            "Records": [
                {
                    "messageId": message["MessageId"],
                    "receiptHandle": message["ReceiptHandle"],
                    "body": message["Body"],
                    "attributes": {"ApproximateReceiveCount": "1"},
                    "messageAttributes": {},
                    "md5OfBody": message["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": arn,
                    "awsRegion": CONFIG.region,
                }
            ]
        }

    def job(self, job_id: str) -> dict[str, Any]:
        item = self.client("dynamodb").get_item(
            TableName=CONFIG.table, Key={"job_id": {"S": job_id}}, ConsistentRead=True
        )["Item"]
        return {k: next(iter(v.values())) for k, v in item.items()}

    def alerts(self) -> list[str]:
        ids = []
        for message in self.receive("alerts", wait=3):
            ids.append(json.loads(message["Body"])["detail"]["alert_id"])
            self.delete("alerts", message)
        return ids


def test_killed_handlers_are_retried_to_one_outcome(
    moto_process: str, tiny_bundle: Path, tmp_path: Path
) -> None:
    world = World(moto_process)
    children = ChildInvocation(tmp_path, world.env(tiny_bundle))
    name = emergency_sample(tiny_bundle)  # the alert path must be crossed
    job_id = new_job_id()
    key = f"uploads/{job_id}.wav"
    world.client("s3").put_object(
        Bucket=CONFIG.bucket, Key=key, Body=sample(name), ContentType="audio/wav"
    )
    bodies = [json.loads(m["Body"]) for m in world.receive("upload-events")]
    (s3_event,) = [b for b in bodies if "Records" in b]  # not S3's own test message

    # 1. the starter dies after Transcribe accepted the job, before the job says so
    died = children.run(
        "starter",
        s3_event,
        pause={"target": "alertfusion.jobs.store:JobStore.mark_transcribing", "when": "before"},
    )
    assert died.killed and died.returncode == -signal.SIGKILL, died.stderr
    assert world.job(job_id)["status"] == "RECEIVED"
    retry = children.run("starter", s3_event)  # Lambda's retry of the S3 event
    assert retry.answer and retry.answer["ok"], retry
    assert world.job(job_id)["status"] == "TRANSCRIBING"

    # 2. the classifier dies after the preliminary verdict, before its alert went out
    tasks = world.receive("work")
    assert [json.loads(t["Body"])["type"] for t in tasks] == ["audio_stage", "audio_stage"]
    died = children.run(
        "classifier",
        world.sqs_event(tasks[0]),
        pause={"target": "alertfusion.notify:send_emergency", "when": "before"},
    )
    assert died.killed and died.returncode == -signal.SIGKILL, died.stderr
    assert "preliminary" in world.job(job_id) and world.alerts() == []
    for task in tasks:  # SQS redelivers the first task; the second comes as well
        done = children.run("classifier", world.sqs_event(task))
        assert done.answer and done.answer["ok"], done
        assert done.answer["response"] == {"batchItemFailures": []}
        world.delete("work", task)

    # 3. Transcribe finishes; the classifier dies after the result file, before the verdict
    text = TRANSCRIPTS[name]
    document = {"results": {"transcripts": [{"transcript": text}], "items": []}}
    world.client("s3").put_object(
        Bucket=CONFIG.bucket, Key=transcript_key(job_id), Body=json.dumps(document).encode()
    )
    finished = json.loads((FIXTURES / "events" / "transcribe-job-completed.json").read_text())
    finished["detail"]["TranscriptionJobName"] = f"{CONFIG.transcribe_job_prefix}{job_id}"
    finished["region"] = CONFIG.region
    died = children.run(
        "classifier",
        finished,
        pause={"target": "alertfusion.pipeline.stages:_write_result_file", "when": "after"},
    )
    assert died.killed and died.returncode == -signal.SIGKILL, died.stderr
    assert world.job(job_id)["status"] == "TRANSCRIBING"
    retry = children.run("classifier", finished)  # EventBridge → Lambda's retry
    assert retry.answer and retry.answer["ok"], retry

    # nothing lost, nothing doubled
    job = world.job(job_id)
    assert job["status"] == "DONE" and "preliminary" in job and "final" in job
    jobs = world.client("transcribe").list_transcription_jobs()["TranscriptionJobSummaries"]
    assert [j["TranscriptionJobName"] for j in jobs] == [f"alert-{job_id}"]
    alerts = world.alerts()
    assert sorted(alerts) == sorted(
        {f"{job_id}:preliminary", *([f"{job_id}:final"] if _emergency(job["final"]) else [])}
    )
    assert world.receive("work", wait=1) == []


def _emergency(verdict: Any) -> bool:
    return bool(verdict["is_emergency"]["BOOL"]) if isinstance(verdict, dict) else False
