"""The one moto fixture of the integration tier, and a small harness around it.

moto (``mock_aws``) starts once for this package, before any client exists; `aws` gives
each test empty backends and creates what the pipeline needs, as the infrastructure
defines it: the audio bucket, the jobs table (GSI
``by_status``, TTL ``expires_at``), the emergency event bus with a test rule that delivers
``EmergencyDetected`` events to an SQS queue (so alerts can be counted), the work queue,
and an ``upload-events`` queue that receives the bucket's real S3 notifications.

Where moto does not behave like AWS the harness fills the gap, explicitly:

* moto's Transcribe writes no transcript file and emits no EventBridge event: the harness
  writes ``transcripts/{job_id}.json`` (Transcribe's format, from
  tests/fixtures/transcribe) and builds the "Transcribe Job State Change" event from
  tests/fixtures/events (``complete_transcription``);
* moto's Transcribe never fails a job: ``fail_transcription`` sets the status of moto's
  job object to FAILED;
* moto never throttles: tests inject ``LimitExceededException`` through botocore's
  ``before-call`` hook, so the real client raises the real exception class;
* S3 → Lambda and SQS → Lambda do not run code here: the harness calls the starter handler
  with the event, and dispatches work-queue messages to the core stage functions the
  classifier handler will call (``drain``), deleting a message only when it succeeded,
  like an SQS event source with partial batch failures.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_plus

import pytest

from alertfusion.jobs import Job, JobStore, create_jobs_table, utc_iso
from alertfusion.keys import transcript_key
from alertfusion.pipeline.context import get_context, reset_context
from alertfusion.pipeline.outcomes import StageOutcome
from alertfusion.pipeline.stages import finalize_job, reclassify_job, run_audio_stage
from alertfusion.tasks import AudioStageTask, ReclassifyTask, parse_task
from alertfusion.transcribe import parse_job_state_change
from tests.conftest import FIXTURES

REGION = "ap-northeast-2"
BUCKET = "alertfusion-test-audio"
TABLE = "alertfusion-test-jobs"
BUS = "alertfusion-test-bus"
PREFIX = "alert-"
EVENTS = FIXTURES / "events"
TRANSCRIBE_FIXTURES = FIXTURES / "transcribe"


@dataclass
class LambdaContext:
    function_name: str = "alertfusion-test"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:alertfusion-test"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


@dataclass
class AwsEnv:
    """Handles on the moto resources, plus the harness steps described above."""

    s3: Any
    sqs: Any
    transcribe: Any
    ddb: Any
    work_queue_url: str
    alerts_queue_url: str
    upload_events_queue_url: str
    received_alerts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def store(self) -> JobStore:
        return get_context().store

    def job(self, job_id: str) -> Job:
        found = self.store.get(job_id)
        assert found is not None, f"no job {job_id}"
        return found

    # -- uploads and S3 events ------------------------------------------------------------

    def put(self, key: str, data: bytes, content_type: str | None = "audio/wav") -> None:
        kwargs: dict[str, Any] = {"Bucket": BUCKET, "Key": key, "Body": data}
        if content_type:
            kwargs["ContentType"] = content_type
        self.s3.put_object(**kwargs)

    def s3_event(self, fixture: str, keys: list[str]) -> dict[str, Any]:
        """The fixture event, rewritten to point at the moto bucket and at `keys` (one per
        record, URL-encoded as S3 encodes them), with each object's real size and eTag and
        the current time (the fixtures' times are in the future of this machine's clock)."""
        event = load_event(fixture)
        assert len(event["Records"]) == len(keys)
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for record, key in zip(event["Records"], keys, strict=True):
            record["eventTime"] = now
            record["s3"]["bucket"]["name"] = BUCKET
            record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{BUCKET}"
            obj = record["s3"]["object"]
            obj["key"] = quote_plus(key, safe="/")
            obj.pop("versionId", None)  # the moto bucket is not versioned
            try:
                head = self.s3.head_object(Bucket=BUCKET, Key=key)
            except Exception:
                continue  # the test sends an event for an object that does not exist
            obj["size"] = head["ContentLength"]
            obj["eTag"] = head["ETag"].strip('"')
        return event

    def upload_event(self, key: str, fixture: str = "s3-object-created.json") -> dict[str, Any]:
        return self.s3_event(fixture, [key])

    def run_starter(self, event: dict[str, Any]) -> dict[str, Any]:
        from functions.starter.app import handler

        result: dict[str, Any] = handler(copy.deepcopy(event), LambdaContext())
        return result

    def run_sweeper(self) -> dict[str, Any]:
        """The sweeper handler with a scheduled event (AWS's documented shape)."""
        from functions.sweeper.app import handler

        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION,
            "resources": [f"arn:aws:events:{REGION}:123456789012:rule/sweeper"],
            "detail": {},
        }
        result: dict[str, Any] = handler(event, LambdaContext())
        return result

    def age(self, job_id: str, seconds: float) -> None:
        """Move every timestamp the sweeper reads `seconds` into the past, as if the job had
        waited that long (no sleeping in tests)."""
        job = self.job(job_id)
        shift = timedelta(seconds=seconds)
        values = {}
        for attribute in ("created_at", "updated_at", "received_at", "uploaded_at"):
            moment = getattr(job, attribute)
            if moment is not None:
                values[attribute] = utc_iso(moment - shift)
        self.ddb.update_item(
            TableName=TABLE,
            Key={"job_id": {"S": job_id}},
            UpdateExpression="SET " + ", ".join(f"#{k} = :{k}" for k in values),
            ExpressionAttributeNames={f"#{k}": k for k in values},
            ExpressionAttributeValues={f":{k}": {"S": v} for k, v in values.items()},
        )

    # -- the work queue (stand-in for the classifier's SQS event source) -------------------

    def queued_tasks(self) -> list[dict[str, Any]]:
        """Peek at the work queue without consuming it."""
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.work_queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        n = int(attrs["ApproximateNumberOfMessages"])
        out: list[dict[str, Any]] = []
        if n == 0:
            return out
        messages = self._receive(self.work_queue_url, visibility=0)
        for message in messages:
            out.append(json.loads(message["Body"]))
        return out

    def _receive(self, url: str, *, visibility: int) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=visibility
            ).get("Messages", [])
            if not batch:
                return got
            got.extend(batch)
            if visibility == 0:
                return got

    def drain(self, classifier: Any, *, max_rounds: int = 20) -> list[StageOutcome]:
        """Run every work-queue task through the core stage it names. A task whose stage
        raises stays in the queue (like SQS partial batch failures); draining stops when
        the queue is empty or a round made no progress."""
        outcomes: list[StageOutcome] = []
        for _ in range(max_rounds):
            batch = self.sqs.receive_message(
                QueueUrl=self.work_queue_url, MaxNumberOfMessages=10, VisibilityTimeout=30
            ).get("Messages", [])
            if not batch:
                return outcomes
            progressed = False
            for message in batch:
                try:
                    task = parse_task(message["Body"])
                    if isinstance(task, AudioStageTask):
                        outcome = run_audio_stage(task.job_id, classifier)
                    elif isinstance(task, ReclassifyTask):
                        outcome = reclassify_job(task.job_id, task.bundle_version, classifier)
                    else:
                        outcome = finalize_job(
                            task.job_id,
                            task.transcribe_status,
                            classifier,
                            failure_reason=task.failure_reason,
                        )
                except Exception:
                    self.sqs.change_message_visibility(
                        QueueUrl=self.work_queue_url,
                        ReceiptHandle=message["ReceiptHandle"],
                        VisibilityTimeout=0,
                    )
                    continue
                outcomes.append(outcome)
                progressed = True
                self.sqs.delete_message(
                    QueueUrl=self.work_queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
            if not progressed:
                return outcomes
        return outcomes

    def take_tasks(self, job_id: str) -> list[dict[str, Any]]:
        """Remove (and return) the queued tasks of one job, leaving the others queued:
        a delayed delivery the test replays later."""
        taken: list[dict[str, Any]] = []
        for message in self._receive(self.work_queue_url, visibility=30):
            body = json.loads(message["Body"])
            if body.get("job_id") == job_id:
                taken.append(body)
                self.sqs.delete_message(
                    QueueUrl=self.work_queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
            else:
                self.sqs.change_message_visibility(
                    QueueUrl=self.work_queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=0,
                )
        return taken

    def purge_work_queue(self) -> int:
        """Drop every queued task (simulates lost messages); returns how many."""
        messages = self._receive(self.work_queue_url, visibility=30)
        for message in messages:
            self.sqs.delete_message(
                QueueUrl=self.work_queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
        return len(messages)

    # -- Transcribe (moto keeps the job; the harness writes what moto does not) -----------

    def transcribe_jobs(self) -> list[str]:
        names: list[str] = []
        kwargs: dict[str, Any] = {}
        while True:
            page = self.transcribe.list_transcription_jobs(**kwargs)
            names.extend(j["TranscriptionJobName"] for j in page["TranscriptionJobSummaries"])
            if not page.get("NextToken"):
                return names
            kwargs["NextToken"] = page["NextToken"]

    def transcribe_job(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self.transcribe.get_transcription_job(
            TranscriptionJobName=PREFIX + job_id
        )["TranscriptionJob"]
        return job

    def _moto_job(self, job_id: str) -> Any:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.transcribe.models import transcribe_backends

        return transcribe_backends[DEFAULT_ACCOUNT_ID][REGION].transcriptions[PREFIX + job_id]

    def complete_transcription(
        self, job_id: str, text: str, *, output: str = "asr-output-ko.json"
    ) -> dict[str, Any]:
        """Write the transcript file Transcribe would write and return its completion event
        (local stand-in: moto writes neither)."""
        self._moto_job(job_id).status = "COMPLETED"
        doc = json.loads((TRANSCRIBE_FIXTURES / output).read_text(encoding="utf-8"))
        doc["jobName"] = PREFIX + job_id
        if output == "asr-output-ko.json":
            doc["results"]["transcripts"] = [{"transcript": text}]
            doc["results"]["audio_segments"][0]["transcript"] = text
        self.s3.put_object(
            Bucket=BUCKET,
            Key=transcript_key(job_id),
            Body=json.dumps(doc, ensure_ascii=False).encode("utf-8"),
            ContentType="application/json",
        )
        return self.transcribe_event(job_id, "transcribe-job-completed.json")

    def fail_transcription(self, job_id: str, reason: str) -> dict[str, Any]:
        """Make moto's job FAILED (moto never fails one) and return the failure event."""
        job = self._moto_job(job_id)
        job.status = "FAILED"
        job.failure_reason = reason
        return self.transcribe_event(job_id, "transcribe-job-failed.json")

    def transcribe_event(self, job_id: str, fixture: str) -> dict[str, Any]:
        event = load_event(fixture)
        event["detail"]["TranscriptionJobName"] = PREFIX + job_id
        event["region"] = REGION
        return event

    def deliver_transcribe_event(self, event: dict[str, Any], classifier: Any) -> StageOutcome:
        """What the classifier handler does with a Transcribe event."""
        change = parse_job_state_change(event, PREFIX)
        assert change is not None, "not a Transcribe event of this pipeline"
        return finalize_job(
            change.job_id, change.status, classifier, failure_reason=change.failure_reason
        )

    # -- fault injection ------------------------------------------------------------------

    def inject_error(
        self,
        service: str,
        operation: str,
        code: str,
        *,
        times: int,
        status: int = 400,
        when: Callable[[dict[str, Any]], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """Make the pipeline's own `service` client fail `operation` with `code` for the
        next `times` matching calls, through botocore's ``before-call`` hook: the real
        client raises the real exception class, as if AWS had answered so. `when` gets
        botocore's serialized request (``url_path``, ``body``...). Returns the intercepted
        requests (one per injected failure)."""
        from botocore.awsrequest import AWSResponse

        client = pipeline_client(service)
        intercepted: list[dict[str, Any]] = []

        def hook(params: dict[str, Any], **_: Any) -> Any:
            if len(intercepted) >= times or (when is not None and not when(params)):
                return None
            intercepted.append(params)
            response = AWSResponse(f"https://{service}.injected", status, {}, None)
            body = {
                "Error": {"Code": code, "Message": "injected by the test"},
                "ResponseMetadata": {"HTTPStatusCode": status},
            }
            return response, body

        event = f"before-call.{client.meta.service_model.service_id.hyphenize()}.{operation}"
        client.meta.events.register(event, hook)
        return intercepted

    # -- alerts ---------------------------------------------------------------------------

    def alerts(self) -> list[dict[str, Any]]:
        """Every EmergencyDetected event delivered so far (bus → test rule → SQS)."""
        for message in self._receive(self.alerts_queue_url, visibility=30):
            self.received_alerts.append(json.loads(message["Body"]))
            self.sqs.delete_message(
                QueueUrl=self.alerts_queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
        return list(self.received_alerts)

    def alert_ids(self) -> list[str]:
        return [a["detail"]["alert_id"] for a in self.alerts()]


def pipeline_client(service: str) -> Any:
    """The client the pipeline's steps use for `service` (the context's, or the cached one
    its job store was built with: ``dynamodb``)."""
    from alertfusion import aws

    found = getattr(get_context(), service, None)
    return found if found is not None else aws.client(service)


_SESSION: list[Any] = []


def _boto_session() -> Any:
    """One boto3 session for the whole test run: a new session parses botocore's model
    files again (~0.3 s per client). moto intercepts every client whatever its session."""
    import boto3
    import botocore.session

    if not _SESSION:
        core = botocore.session.Session()
        _SESSION.extend([boto3.session.Session(botocore_session=core), core])
    return _SESSION[0]


def _botocore_session() -> Any:
    """The botocore session under `_boto_session()`: what `alertfusion.aws` is given."""
    _boto_session()
    return _SESSION[1]


def _backfill_state_machine(session: Any, work_queue_url: str) -> str:
    """The backfill state machine as the stack defines it (moto stores its executions here
    without running them; tests/e2e/test_backfill.py runs them in the local stack)."""
    from alertfusion.backfill.definition import definition_text, substitute
    from alertfusion.backfill.plan import plan_for

    text = substitute(
        definition_text(plan_for("always")),
        {
            "BackfillFunctionArn": f"arn:aws:lambda:{REGION}:123456789012:function:backfill",
            "WorkQueueUrl": work_queue_url,
            "AudioBucket": BUCKET,
        },
    )
    answer = session.client("stepfunctions", region_name=REGION).create_state_machine(
        name="alertfusion-test-backfill",
        definition=text,
        roleArn="arn:aws:iam::123456789012:role/alertfusion-test-backfill",
    )
    return str(answer["stateMachineArn"])


def _create_resources(monkeypatch: pytest.MonkeyPatch) -> AwsEnv:
    session = _boto_session()
    s3 = session.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    ddb = session.client("dynamodb", region_name=REGION)
    create_jobs_table(ddb, TABLE)
    sqs = session.client("sqs", region_name=REGION)
    work = sqs.create_queue(QueueName="alertfusion-test-work")["QueueUrl"]
    alerts = sqs.create_queue(QueueName="alertfusion-test-alerts")["QueueUrl"]
    uploads = sqs.create_queue(QueueName="alertfusion-test-upload-events")["QueueUrl"]

    def arn(url: str) -> str:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(attrs["Attributes"]["QueueArn"])

    events = session.client("events", region_name=REGION)
    events.create_event_bus(Name=BUS)
    events.put_rule(
        Name="emergency-to-test-queue",
        EventBusName=BUS,
        EventPattern=json.dumps(
            {"source": ["alertfusion"], "detail-type": ["EmergencyDetected", "AlertDetected"]}
        ),
    )
    events.put_targets(
        Rule="emergency-to-test-queue",
        EventBusName=BUS,
        Targets=[{"Id": "alerts", "Arn": arn(alerts)}],
    )
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "Id": "uploads-created",
                    "QueueArn": arn(uploads),
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "uploads/"}]}},
                }
            ]
        },
    )
    backfills = _backfill_state_machine(session, work)
    for name, value in {
        "AUDIO_BUCKET": BUCKET,
        "JOBS_TABLE": TABLE,
        "EVENT_BUS_NAME": BUS,
        "WORK_QUEUE_URL": work,
        "BACKFILL_STATE_MACHINE_ARN": backfills,
        "TRANSCRIBE_JOB_PREFIX": PREFIX,
        "TRANSCRIBE_POLICY": "always",
    }.items():
        monkeypatch.setenv(name, value)
    reset_context(_botocore_session())
    # no real sleeping between Transcribe retries in tests; the delays are still computed
    get_context().sleep = lambda _seconds: None
    return AwsEnv(
        s3=s3,
        sqs=sqs,
        transcribe=session.client("transcribe", region_name=REGION),
        ddb=ddb,
        work_queue_url=work,
        alerts_queue_url=alerts,
        upload_events_queue_url=uploads,
    )


@pytest.fixture(scope="package")
def _moto() -> Iterator[None]:
    """moto, started once for this package (starting it patches ~1300 HTTP routes, 0.3 s);
    every test still gets empty backends (see `aws`)."""
    from moto import mock_aws

    with mock_aws():
        yield


@pytest.fixture
def aws(_moto: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsEnv]:
    """Empty moto backends with the pipeline's resources; settings and clients rebuilt for
    each test."""
    from moto.core.base_backend import BackendDict
    from moto.moto_api import state_manager

    BackendDict.reset()
    reset_context(_botocore_session())
    env = _create_resources(monkeypatch)
    try:
        yield env
    finally:
        state_manager.unset_transition("transcribe::transcriptionjob")
        reset_context()
        BackendDict.reset()


def configure(monkeypatch: pytest.MonkeyPatch, **settings: str) -> None:
    """Change pipeline settings for one test (rebuilds the context, keeps moto)."""
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    reset_context(_botocore_session())
    get_context().sleep = lambda _seconds: None
