"""`GET /jobs/{job_id}`: every state of a job as the pipeline writes it (through the real
job store on moto), Retry-After while pending, 404/422."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alertfusion.errors import ReasonCode
from alertfusion.jobs import JobStore, UploadInfo, Verdict
from alertfusion.keys import new_job_id, upload_key
from tests.integration.api.conftest import Api
from tests.integration.api.test_app import error_of

pytestmark = pytest.mark.integration


def verdict(label: str = "help", **overrides: Any) -> Verdict:
    values: dict[str, Any] = {
        "label": label,
        "label_ko": "도움요청" if label == "help" else "정상",
        "is_emergency": label != "regular",
        "decided_by": "audio_only",
        "emergency_probability": 0.8 if label != "regular" else 0.1,
        "probabilities": {"regular": 0.2, "help": 0.8},
        "bundle_version": "tiny-test",
        "trained": False,
        "duration_s": 4.2,
        "windows": 1,
        "selected_window": 0,
        "inference_ms": 12.5,
        "decided_at": datetime.now(UTC),
    }
    values.update(overrides)
    return Verdict(**values)


def upload_info(job_id: str, duration: float = 4.2) -> UploadInfo:
    return UploadInfo(
        object_key=upload_key(job_id, "wav"),
        extension="wav",
        size_bytes=1000,
        content_type="audio/wav",
        etag="abc",
        version_id=None,
        uploaded_at=datetime.now(UTC),
        container="wav",
        probed_duration_s=duration,
    )


def store(api: Api) -> JobStore:
    return api.aws.store


def test_unknown_job_is_404(api: Api) -> None:
    response = api.client.get(f"/jobs/{new_job_id()}")
    assert response.status_code == 404
    assert error_of(response)["code"] == "JOB_NOT_FOUND"


@pytest.mark.parametrize(
    "job_id",
    [
        "abc",
        "01jd3w7q5v2zk8f9x4m6n0p1rs",
        "81JD3W7Q5V2ZK8F9X4M6N0P1RS",
        "01JD3W7Q5V2ZK8F9X4M6N0P1RSX",
    ],
)
def test_invalid_ids_are_422(api: Api, job_id: str) -> None:
    response = api.client.get(f"/jobs/{job_id}")
    assert response.status_code == 422
    assert error_of(response)["code"] == "INVALID_INPUT"


def test_other_items_of_the_table_are_not_reachable(api: Api) -> None:
    api.client.post(
        "/uploads", json={"content_type": "audio/wav"}, headers={"Idempotency-Key": "k"}
    )
    items = api.aws.ddb.scan(TableName="alertfusion-test-jobs")["Items"]
    idem = next(i["job_id"]["S"] for i in items if i["job_id"]["S"].startswith("idempotency#"))
    assert api.client.get(f"/jobs/{idem}").status_code in (404, 422)


def test_pending_upload(api: Api) -> None:
    job_id = api.client.post("/uploads", json={"content_type": "audio/wav"}).json()["job_id"]
    response = api.client.get(f"/jobs/{job_id}")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "UPLOAD_PENDING" and body["is_final"] is False
    assert body["preliminary"] is None and body["final"] is None
    assert response.headers["retry-after"] == "2" == str(body["retry_after_seconds"])
    assert response.headers["cache-control"] == "no-store"
    assert "client_transcript" not in response.text


def test_received_then_preliminary_then_done(api: Api) -> None:
    jobs = store(api)
    job_id = new_job_id()
    jobs.create_pending(job_id, object_key=upload_key(job_id, "wav"), content_type="audio/wav")
    jobs.receive(job_id, upload_info(job_id, duration=10.0))

    received = api.client.get(f"/jobs/{job_id}")
    assert received.json()["status"] == "RECEIVED"
    assert received.headers["retry-after"] == "1"  # the audio stage takes seconds

    jobs.mark_transcribing(job_id, f"alert-{job_id}")
    jobs.set_preliminary(job_id, verdict("help"), latency_ms=850.0)
    transcribing = api.client.get(f"/jobs/{job_id}")
    body = transcribing.json()
    assert body["status"] == "TRANSCRIBING"
    assert body["preliminary"]["label"] == "help"
    assert body["preliminary"]["is_emergency"] is True
    assert body["transcribe"] == {"status": "STARTED", "detail": None}
    assert body["timings"]["preliminary_latency_ms"] == 850.0
    assert body["duration_s"] == 10.0
    # Transcribe just started: ~15 s + 0.5 x 10 s expected, capped at 10
    assert transcribing.headers["retry-after"] == "10"

    final = verdict(
        "help", decided_by="fusion", text_source="transcribe", probabilities={"help": 0.9}
    )
    jobs.finish(job_id, final, latency_ms=9000.0, transcribe_status="COMPLETED")
    done = api.client.get(f"/jobs/{job_id}")
    body = done.json()
    assert body["status"] == "DONE" and body["is_final"] is True
    assert body["final"]["decided_by"] == "fusion"
    assert body["final"]["text_source"] == "transcribe"
    assert body["reason_codes"] == []
    assert body["retry_after_seconds"] is None
    assert "retry-after" not in done.headers
    timings = body["timings"]
    for name in ("created_at", "uploaded_at", "received_at", "transcribing_at", "done_at"):
        assert timings[name] and timings[name].endswith("Z"), name


def test_audio_only_final_carries_its_reason(api: Api) -> None:
    jobs = store(api)
    job_id = new_job_id()
    jobs.receive(job_id, upload_info(job_id))
    jobs.set_preliminary(job_id, verdict("regular"), latency_ms=None)
    final = verdict(
        "regular",
        audio_only_reason=ReasonCode.TRANSCRIPT_EMPTY,
        audio_only_detail="Transcribe heard no words",
    )
    jobs.finish(job_id, final, latency_ms=None, transcribe_status="COMPLETED")
    body = api.client.get(f"/jobs/{job_id}").json()
    assert body["reason_codes"] == ["TRANSCRIPT_EMPTY"]
    assert body["final"]["audio_only_reason"] == "TRANSCRIPT_EMPTY"
    assert body["failure"] is None


def test_failed_job(api: Api) -> None:
    jobs = store(api)
    job_id = new_job_id()
    jobs.receive(job_id, upload_info(job_id))
    jobs.fail(job_id, ReasonCode.TOO_SHORT, "the recording lasts 0.30 s")
    response = api.client.get(f"/jobs/{job_id}")
    body = response.json()
    assert body["status"] == "FAILED" and body["is_final"] is True
    assert body["failure"] == {"reason": "TOO_SHORT", "detail": "the recording lasts 0.30 s"}
    assert body["reason_codes"] == ["TOO_SHORT"]
    assert "retry-after" not in response.headers
    assert body["timings"]["failed_at"]


def test_hand_dropped_upload_is_visible(api: Api) -> None:
    jobs = store(api)
    job_id = new_job_id()
    jobs.receive(job_id, upload_info(job_id))
    body = api.client.get(f"/jobs/{job_id}").json()
    assert body["source"] == "s3"
    assert body["object_key"] == upload_key(job_id, "wav")


def test_retry_after_shrinks_as_transcribe_runs(api: Api) -> None:
    jobs = store(api)
    job_id = new_job_id()
    jobs.receive(job_id, upload_info(job_id, duration=4.0))
    jobs.mark_transcribing(job_id, f"alert-{job_id}")
    jobs.set_preliminary(job_id, verdict(), latency_ms=None)
    waits = []
    for seconds_ago in (0, 8, 14, 30, 200):
        api.aws.ddb.update_item(
            TableName="alertfusion-test-jobs",
            Key={"job_id": {"S": job_id}},
            UpdateExpression="SET transcribing_at = :t",
            ExpressionAttributeValues={
                ":t": {
                    "S": (datetime.now(UTC) - timedelta(seconds=seconds_ago))
                    .isoformat(timespec="milliseconds")
                    .replace("+00:00", "Z")
                }
            },
        )
        waits.append(int(api.client.get(f"/jobs/{job_id}").headers["retry-after"]))
    # Transcribe expected 17 s after it started: 10 (capped), 9, 3; 13 s overdue: 2 + 1;
    # 183 s overdue: backed off to the 15 s cap
    assert waits[:4] == [10, 9, 3, 3]
    assert waits[4] == 15


def test_expected_transcribe_time_is_a_setting(make_api: Callable[..., Api]) -> None:
    """Locally a stand-in transcribes at once: the client should not wait 10 s."""
    api = make_api(transcribe_expected_seconds=0)
    jobs = store(api)
    job_id = new_job_id()
    jobs.receive(job_id, upload_info(job_id, duration=1.0))
    jobs.mark_transcribing(job_id, f"alert-{job_id}")
    jobs.set_preliminary(job_id, verdict(), latency_ms=None)
    assert api.client.get(f"/jobs/{job_id}").headers["retry-after"] == "2"
