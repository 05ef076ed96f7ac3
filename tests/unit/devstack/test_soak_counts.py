"""The soak's counts, fed constructed end states: a clean state counts zero everywhere, and
each way a job can be lost, transcribed twice, alerted twice or not at all, or given a verdict
of other bytes makes its must-be-zero count 1 and the exit status 1."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from alertfusion.dynamodb import to_attribute
from alertfusion.errors import ReasonCode
from alertfusion.jobs import Job, JobStatus
from alertfusion.jobs.model import Verdict
from alertfusion.keys import transcribe_job_name, transcript_key
from devstack import soak
from devstack.config import LocalConfig

pytestmark = pytest.mark.unit

CONFIG = LocalConfig()
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
JOB_A = "01JD3W7Q5V2ZK8F9X4M6N0P1RA"
JOB_B = "01JD3W7Q5V2ZK8F9X4M6N0P1RB"


class NoSuchKey(Exception):
    pass


class FakeS3:
    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        if Bucket != CONFIG.bucket or Key not in self.objects:
            raise NoSuchKey(Key)
        return {"Body": io.BytesIO(self.objects[Key])}


class FakeStack:
    """What the soak's counts read from the stack, as plain lists."""

    config = CONFIG

    def __init__(self) -> None:
        self.jobs: list[Job] = []
        self.transcribe_jobs: list[str] = []
        self.delivered: list[str] = []
        self.s3 = FakeS3({})

    def all_jobs(self) -> list[dict[str, Any]]:
        return [
            {k: to_attribute(v) for k, v in job.model_dump(mode="json", exclude_none=True).items()}
            for job in self.jobs
        ]

    def transcribe_job_names(self) -> list[str]:
        return list(self.transcribe_jobs)

    def alerts(self) -> list[dict[str, Any]]:
        return [{"detail": {"alert_id": alert_id}} for alert_id in self.delivered]

    def client(self, service: str) -> FakeS3:
        assert service == "s3"
        return self.s3


def recording(seconds: float, salt: bytes) -> soak.Recording:
    data = b"RIFF" + salt * 64
    return soak.Recording(data, hashlib.md5(data).hexdigest(), seconds, "audio")


def verdict(etag: str, seconds: float, *, emergency: bool, text: bool = False) -> Verdict:
    return Verdict(
        label="help" if emergency else "regular",
        label_ko="도움요청" if emergency else "일상",
        is_emergency=emergency,
        decided_by="fusion",
        emergency_probability=0.9 if emergency else 0.1,
        text_source="transcribe" if text else None,
        bundle_version="tiny",
        trained=False,
        duration_s=seconds,
        windows=1,
        selected_window=0,
        inference_ms=1.0,
        decided_at=NOW,
        object_etag=etag,
    )


def transcript_file(text: str) -> bytes:
    return json.dumps({"results": {"transcripts": [{"transcript": text}]}}).encode("utf-8")


class State:
    """Two accepted uploads as a clean run ends them: A DONE with an emergency verdict (its
    alerts delivered once, its transcript naming its bytes), B refused as too short."""

    def __init__(self) -> None:
        self.stack = FakeStack()
        self.run = soak.Soak(soak.parse_args(["--uploads", "2"]), io.StringIO())
        self.rec_a = recording(1.5, b"a")
        self.rec_b = recording(0.3, b"b")
        for index, (job_id, rec) in enumerate(((JOB_A, self.rec_a), (JOB_B, self.rec_b))):
            upload = soak.Upload(
                index, job_id, f"uploads/{job_id}.wav", {}, "http://s3", {"content_type": "x"}
            )
            upload.objects.append(rec)
            self.run.uploads.append(upload)
        etag = self.rec_a.md5
        self.job_a = Job(
            job_id=JOB_A,
            status=JobStatus.DONE,
            created_at=NOW,
            updated_at=NOW,
            expires_at=0,
            object_key=f"uploads/{JOB_A}.wav",
            etag=etag,
            preliminary=verdict(etag, 1.5, emergency=True),
            final=verdict(etag, 1.5, emergency=True, text=True),
        )
        self.job_b = Job(
            job_id=JOB_B,
            status=JobStatus.FAILED,
            created_at=NOW,
            updated_at=NOW,
            expires_at=0,
            object_key=f"uploads/{JOB_B}.wav",
            etag=self.rec_b.md5,
            failure_reason=ReasonCode.TOO_SHORT,
        )
        self.run.classified[f"{JOB_A}.wav"] = {etag}
        self.stack.transcribe_jobs.append(transcribe_job_name(JOB_A, CONFIG.transcribe_job_prefix))
        self.stack.delivered += [f"{JOB_A}:preliminary", f"{JOB_A}:final"]
        self.stack.s3.objects[transcript_key(JOB_A)] = transcript_file(
            soak.transcript_of(self.rec_a)
        )

    def count(self) -> soak.Report:
        self.stack.jobs = [self.job_a, self.job_b]
        return self.run._count(self.stack)


def test_a_clean_end_state_counts_zero() -> None:
    report = State().count()
    assert (report.accepted, report.done, dict(report.failed)) == (2, 1, {"TOO_SHORT": 1})
    assert set(report.must_be_zero.values()) == {0}
    assert report.ok


def _update(name: str, **changes: Any) -> Callable[[State], None]:
    def change(state: State) -> None:
        setattr(state, name, getattr(state, name).model_copy(update=changes))

    return change


def _other_final(**changes: Any) -> Callable[[State], None]:
    def change(state: State) -> None:
        assert state.job_a.final is not None
        state.job_a = state.job_a.model_copy(
            update={"final": state.job_a.final.model_copy(update=changes)}
        )

    return change


def _transcribe_for(job_id: str) -> Callable[[State], None]:
    def change(state: State) -> None:
        state.stack.transcribe_jobs.append(
            transcribe_job_name(job_id, CONFIG.transcribe_job_prefix)
        )

    return change


def _alert_twice(state: State) -> None:
    state.stack.delivered.append(f"{JOB_A}:final")


def _alert_lost(state: State) -> None:
    state.stack.delivered.remove(f"{JOB_A}:preliminary")


def _missing(state: State) -> None:
    state.run.uploads[0].job_id = "01JD3W7Q5V2ZK8F9X4M6N0P1RZ"


def _other_bytes_classified(state: State) -> None:
    state.run.classified[f"{JOB_A}.wav"].add("0" * 32)


def _transcript_of_other_bytes(state: State) -> None:
    state.stack.s3.objects[transcript_key(JOB_A)] = transcript_file(
        soak.transcript_of(recording(1.5, b"z"))
    )


def _names_unknown_etag(state: State) -> None:
    _update("job_a", etag="f" * 32)(state)


def _client_transcript_and_transcribe(state: State) -> None:
    _update("job_a", client_transcript="도와주세요")(state)


CASES: dict[str, tuple[Callable[[State], None], str]] = {
    "job still transcribing": (_update("job_a", status=JobStatus.TRANSCRIBING), "lost"),
    "job still pending": (_update("job_b", status=JobStatus.UPLOAD_PENDING), "lost"),
    "no job at all": (_missing, "lost"),
    "two Transcribe jobs": (_transcribe_for(JOB_A), "duplicate Transcribe jobs"),
    "Transcribe for a refused upload": (_transcribe_for(JOB_B), "duplicate Transcribe jobs"),
    "Transcribe despite the client's transcript": (
        _client_transcript_and_transcribe,
        "duplicate Transcribe jobs",
    ),
    "an alert delivered twice": (_alert_twice, "duplicate alerts"),
    "an emergency verdict without its alert": (_alert_lost, "lost alerts"),
    "a verdict of another ETag": (
        _other_final(object_etag="e" * 32),
        "verdicts whose bytes differ from the object they name",
    ),
    "a verdict of another length": (
        _other_final(duration_s=2.5),
        "verdicts whose bytes differ from the object they name",
    ),
    "other bytes given to the classifier": (
        _other_bytes_classified,
        "verdicts whose bytes differ from the object they name",
    ),
    "a transcript of other bytes fused": (
        _transcript_of_other_bytes,
        "verdicts whose bytes differ from the object they name",
    ),
    "a job naming an ETag no upload had": (
        _names_unknown_etag,
        "verdicts whose bytes differ from the object they name",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_defect_makes_its_count_one(case: str) -> None:
    change, counted = CASES[case]
    state = State()
    change(state)
    report = state.count()
    assert report.must_be_zero[counted] == 1, report.must_be_zero
    assert {k: v for k, v in report.must_be_zero.items() if k != counted} == dict.fromkeys(
        (k for k in report.must_be_zero if k != counted), 0
    )
    assert not report.ok
    printed = io.StringIO()
    report.print(printed)
    assert f"{counted}: 1  <-- must be 0" in printed.getvalue()


@pytest.mark.parametrize("bad", [False, True])
def test_the_exit_status_follows_the_counts(
    bad: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_bundle_dir: Path
) -> None:
    state = State()
    if bad:
        _alert_twice(state)
    report = state.count()
    monkeypatch.setattr(soak.Soak, "run", lambda self: report)
    out = tmp_path / "soak.json"
    status = soak.main(
        [
            "--uploads",
            "2",
            "--bundle",
            str(tiny_bundle_dir),
            "--json",
            str(out),
            "--log",
            str(tmp_path / "soak.log"),
        ]
    )
    assert status == (1 if bad else 0)
    assert json.loads(out.read_text("utf-8"))["duplicate_alerts"] == (1 if bad else 0)


@pytest.fixture
def tiny_bundle_dir(tmp_path: Path) -> Path:
    """main() only checks that the bundle has a manifest before it runs (Soak.run is replaced)."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text("{}", "utf-8")
    return bundle
