"""`DELETE /jobs/{id}` against moto with the real handlers: the recording, transcript, result
file and Transcribe job are gone, the record is a tombstone, and neither a late Transcribe
event, a late upload, a classification that was already running nor the sweeper brings
the job back."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from alertfusion.jobs import JobStatus
from alertfusion.jobs.store import JobStore
from alertfusion.keys import is_job_id, new_job_id
from alertfusion.pipeline.sweeper import sweep
from alertfusion.result import ClassificationResult
from tests.conftest import SAMPLES
from tests.integration.api.conftest import Api
from tests.integration.conftest import BUCKET, PREFIX, TABLE
from tests.pipeline_doubles import FakeClassifier
from tests.tokens import ALICE, BOB, Issuer, jwks_server, token_settings

pytestmark = pytest.mark.integration

HELP_WAV = (SAMPLES / "ko-help-16k.wav").read_bytes()
TEXT = "도와주세요 여기 사람이 쓰러졌어요"


@pytest.fixture
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture
def users(make_api: Callable[..., Api], issuer: Issuer) -> Iterator[Api]:
    with jwks_server(issuer) as url:
        yield make_api(**token_settings(url))


@pytest.fixture
def manual_transcribe() -> Iterator[None]:
    """Only the test moves moto's Transcribe jobs (by default a GET advances them)."""
    from moto.moto_api import state_manager

    state_manager.set_transition(
        "transcribe::transcriptionjob", {"progression": "manual", "times": 2**62}
    )
    yield


@dataclass
class Flow:
    api: Api
    issuer: Issuer
    classifier: FakeClassifier

    @property
    def aws(self) -> Any:
        return self.api.aws

    def headers(self, subject: str = ALICE) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.issuer.token(subject)}"}

    def create(self) -> tuple[str, str]:
        """Alice's job, UPLOAD_PENDING: (job id, upload key)."""
        created = self.api.client.post(
            "/uploads", json={"content_type": "audio/wav"}, headers=self.headers()
        )
        assert created.status_code == 201, created.text
        body = created.json()
        return body["job_id"], body["upload"]["key"]

    def transcribing(self) -> tuple[str, str]:
        """Alice's job uploaded, preliminary verdict recorded, Transcribe running."""
        job_id, key = self.create()
        self.aws.put(key, HELP_WAV)
        self.aws.run_starter(self.aws.upload_event(key))
        self.aws.drain(self.classifier)
        assert self.aws.job(job_id).status is JobStatus.TRANSCRIBING
        self.moto_transcription(job_id).status = "IN_PROGRESS"
        return job_id, key

    def done(self) -> tuple[str, str]:
        job_id, key = self.transcribing()
        event = self.aws.complete_transcription(job_id, TEXT)
        self.aws.deliver_transcribe_event(event, self.classifier)
        assert self.aws.job(job_id).status is JobStatus.DONE
        return job_id, key

    def moto_transcription(self, job_id: str) -> Any:
        return self.aws._moto_job(job_id)

    def delete(self, job_id: str, subject: str = ALICE) -> Any:
        return self.api.client.delete(f"/jobs/{job_id}", headers=self.headers(subject))

    def keys_of(self, job_id: str) -> list[str]:
        listed = self.aws.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
        return sorted(o["Key"] for o in listed if job_id in o["Key"])

    def transcribe_job_exists(self, job_id: str) -> bool:
        return PREFIX + job_id in self.aws.transcribe_jobs()

    def raw_item(self, job_id: str) -> dict[str, Any]:
        item: dict[str, Any] = self.aws.ddb.get_item(
            TableName=TABLE, Key={"job_id": {"S": job_id}}, ConsistentRead=True
        )["Item"]
        return item

    def tasks_for(self, job_id: str) -> list[dict[str, Any]]:
        return [t for t in self.aws.queued_tasks() if t.get("job_id") == job_id]


@pytest.fixture
def flow(users: Api, issuer: Issuer, manual_transcribe: None) -> Flow:
    return Flow(users, issuer, FakeClassifier(audio_label="help", text_labels={"도와": "help"}))


def assert_tombstone_only(flow: Flow, job_id: str) -> None:
    """The record keeps when and whose, nothing of what was said or decided."""
    item = flow.raw_item(job_id)
    allowed = set(JobStore.TOMBSTONE_ATTRIBUTES) | {
        "status",
        "updated_at",
        "deleted_at",
        "purged_at",
        "sweep_count",
        "last_swept_at",
    }
    assert set(item) <= allowed, set(item) - allowed
    assert TEXT not in json.dumps(item, ensure_ascii=False)


def test_deleting_a_done_job_removes_every_trace(flow: Flow) -> None:
    job_id, key = flow.done()
    assert flow.keys_of(job_id) == sorted(
        [key, f"results/{job_id}.json", f"transcripts/{job_id}.json"]
    )
    alerts_before = flow.aws.alerts()
    assert {a["detail"]["owner"] for a in alerts_before} == {f"user:{ALICE}"}

    response = flow.delete(job_id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["is_final"]) == ("DELETED", True)
    assert body["preliminary"] is None and body["final"] is None
    assert body["timings"]["deleted_at"] and body["timings"]["purged_at"]
    assert flow.keys_of(job_id) == []
    assert not flow.transcribe_job_exists(job_id)
    assert_tombstone_only(flow, job_id)
    assert flow.raw_item(job_id)["owner"] == {"S": f"user:{ALICE}"}

    # the owner sees the tombstone; anyone else a 404; deleting again changes nothing
    mine = flow.api.client.get(f"/jobs/{job_id}", headers=flow.headers())
    assert mine.status_code == 200 and mine.json()["status"] == "DELETED"
    assert "retry-after" not in mine.headers
    assert flow.api.client.get(f"/jobs/{job_id}", headers=flow.headers(BOB)).status_code == 404
    again = flow.delete(job_id)
    assert again.status_code == 200 and again.json()["timings"] == body["timings"]

    # a redelivered completion event: ignored, nothing written again
    outcome = flow.aws.deliver_transcribe_event(
        flow.aws.transcribe_event(job_id, "transcribe-job-completed.json"), flow.classifier
    )
    assert outcome.action == "deleted"
    assert flow.keys_of(job_id) == [] and flow.aws.job(job_id).status is JobStatus.DELETED
    assert flow.aws.alerts() == alerts_before


def test_a_late_transcribe_event_is_ignored_and_its_transcript_deleted(flow: Flow) -> None:
    job_id, key = flow.transcribing()
    calls = len(flow.classifier.calls)

    deleting = flow.delete(job_id)
    assert deleting.status_code == 200
    # Transcribe deletes only finished jobs: the tombstone waits for it
    assert deleting.json()["status"] == "DELETING"
    assert deleting.json()["timings"]["purged_at"] is None
    assert key not in flow.keys_of(job_id)
    assert flow.transcribe_job_exists(job_id)

    # Transcribe finishes, writes the transcript and sends its event: too late
    outcome = flow.aws.deliver_transcribe_event(
        flow.aws.complete_transcription(job_id, TEXT), flow.classifier
    )
    assert outcome.action == "deleted"
    assert len(flow.classifier.calls) == calls  # nothing was classified
    assert flow.keys_of(job_id) == []  # the transcript it wrote is gone
    assert not flow.transcribe_job_exists(job_id)
    job = flow.aws.job(job_id)
    assert job.status is JobStatus.DELETED and job.final is None and job.purged_at is not None
    assert [a["detail"]["stage"] for a in flow.aws.alerts()] == ["preliminary"]
    assert_tombstone_only(flow, job_id)


def test_the_sweeper_finishes_a_purge_and_never_revives_the_job(flow: Flow) -> None:
    job_id, _ = flow.transcribing()
    assert flow.delete(job_id).json()["status"] == "DELETING"

    # stuck past the deadline while Transcribe still runs: the sweeper only waits
    flow.aws.age(job_id, 3600)
    report = sweep()
    assert (report.purged, report.finalize_sent, report.audio_stage_sent) == (0, 0, 0)
    assert flow.aws.job(job_id).status is JobStatus.DELETING
    assert flow.tasks_for(job_id) == []

    # Transcribe ends and its event is lost: the next sweep deletes what it left
    flow.aws.complete_transcription(job_id, TEXT)
    assert flow.keys_of(job_id) == [f"transcripts/{job_id}.json"]
    flow.aws.age(job_id, 3600)
    report = sweep()
    assert report.purged == 1 and report.timed_out == 0
    assert flow.keys_of(job_id) == [] and not flow.transcribe_job_exists(job_id)
    assert flow.aws.job(job_id).status is JobStatus.DELETED

    # long after: sweeps leave a DELETED tombstone alone (never FAILED, never re-driven)
    for _ in range(2):
        flow.aws.age(job_id, 10 * 3600)
        report = sweep()
        assert report.checked == 0
    job = flow.aws.job(job_id)
    assert job.status is JobStatus.DELETED and job.failure_reason is None
    assert flow.tasks_for(job_id) == []
    assert_tombstone_only(flow, job_id)


def test_an_upload_after_the_deletion_is_deleted_too(flow: Flow) -> None:
    job_id, key = flow.create()
    deleted = flow.delete(job_id)
    assert deleted.json()["status"] == "DELETED"  # nothing was running: purged at once

    # the app still held the presigned POST and uploads now
    flow.aws.put(key, HELP_WAV)
    out = flow.aws.run_starter(flow.aws.upload_event(key))
    assert out["records"] == [
        {"object_key": key, "job_id": job_id, "action": "ignored", "detail": "the job was deleted"}
    ]
    assert flow.keys_of(job_id) == []
    assert not flow.transcribe_job_exists(job_id)
    assert flow.tasks_for(job_id) == []
    assert flow.aws.job(job_id).status is JobStatus.DELETED


def test_a_queued_audio_stage_finds_the_tombstone(flow: Flow) -> None:
    job_id, key = flow.create()
    flow.aws.put(key, HELP_WAV)
    flow.aws.run_starter(flow.aws.upload_event(key))
    assert [t["type"] for t in flow.tasks_for(job_id)] == ["audio_stage"]
    flow.moto_transcription(job_id).status = "IN_PROGRESS"
    assert flow.delete(job_id).json()["status"] == "DELETING"

    (outcome,) = flow.aws.drain(flow.classifier)
    assert outcome.action == "deleted"
    assert flow.classifier.calls == []  # the recording was never classified
    assert flow.aws.job(job_id).preliminary is None
    assert flow.aws.alerts() == []


def test_a_result_written_while_the_job_was_deleted_does_not_stay(flow: Flow) -> None:
    job_id, _ = flow.transcribing()
    event = flow.aws.complete_transcription(job_id, TEXT)

    class DeletedMeanwhile(FakeClassifier):
        """The owner deletes the job while its final verdict is being computed."""

        def classify(self, audio: bytes, **kwargs: Any) -> ClassificationResult:
            result = super().classify(audio, **kwargs)
            assert flow.delete(job_id).status_code == 200
            return result

    slow = DeletedMeanwhile(audio_label="help", text_labels={"도와": "help"})
    outcome = flow.aws.deliver_transcribe_event(event, slow)
    assert outcome.action == "deleted" and len(slow.calls) == 1
    assert flow.keys_of(job_id) == []  # results/{id}.json was written, then deleted
    job = flow.aws.job(job_id)
    assert job.status is JobStatus.DELETED and job.final is None
    assert [a["detail"]["stage"] for a in flow.aws.alerts()] == ["preliminary"]


def test_only_the_owner_may_delete(flow: Flow) -> None:
    job_id, key = flow.done()
    refused = flow.delete(job_id, subject=BOB)
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "JOB_NOT_FOUND"
    assert flow.aws.job(job_id).status is JobStatus.DONE
    assert key in flow.keys_of(job_id) and flow.transcribe_job_exists(job_id)


def test_an_operator_deletes_everything_of_one_owner(
    flow: Flow, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m alertfusion delete --owner user:<sub>`: every job of that person goes as
    DELETE /jobs/{id} would take it; nobody else's job is touched."""
    from alertfusion.cli import main

    done, done_key = flow.done()
    running, _ = flow.transcribing()
    bobs = flow.api.client.post(
        "/uploads", json={"content_type": "audio/wav"}, headers=flow.headers(BOB)
    ).json()["job_id"]
    owner = f"user:{ALICE}"

    def shown() -> dict[str, str]:
        """The command's lines (`<job id> <status>`), not the handlers' JSON logs."""
        lines = [line.split() for line in capsys.readouterr().out.splitlines()]
        return {words[0]: words[1] for words in lines if words and is_job_id(words[0])}

    capsys.readouterr()
    assert main(["delete", "--owner", owner, "--dry-run"]) == 0
    listed = shown()
    assert listed == {done: "DONE", running: "TRANSCRIBING"}
    assert done_key in flow.keys_of(done)  # a dry run deletes nothing

    assert main(["delete", "--owner", owner]) == 0
    assert shown() == {done: "DELETED", running: "DELETING"}  # Transcribe still runs for one
    assert flow.keys_of(done) == [] and not flow.transcribe_job_exists(done)
    for job_id in (done, running):
        assert_tombstone_only(flow, job_id)
    assert flow.aws.job(bobs).status is JobStatus.UPLOAD_PENDING

    # unknown ids and owners that are not what jobs record are refused
    unknown = new_job_id()
    assert main(["delete", "--job", unknown]) == 2
    assert shown() == {unknown: "NOT_FOUND"}
    assert main(["delete", "--owner", ALICE]) == 2
    assert "user:<token subject>" in capsys.readouterr().err
