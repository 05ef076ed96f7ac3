"""`POST /backfills` and `GET /backfills/{id}` on moto: the location rules, the dry run
(headers read, nothing started), the start (an execution of the state machine with the
run's input) and the status (the execution and the results written so far)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.api.conftest import API_KEY, Api, sample
from tests.integration.conftest import BUCKET, TABLE

pytestmark = pytest.mark.integration

SAMPLES = ["ko-help-16k.wav", "ko-regular-22k.wav"]


def put_archive(api: Api, prefix: str = "archive/2024/") -> None:
    for i, name in enumerate(SAMPLES):
        api.put(f"{prefix}{i}-{name}", sample(name))


def executions(api: Api) -> list[dict[str, object]]:
    import os

    import boto3

    sfn = boto3.client("stepfunctions", region_name="ap-northeast-2")
    machine = os.environ["BACKFILL_STATE_MACHINE_ARN"]
    found: list[dict[str, object]] = sfn.list_executions(stateMachineArn=machine)["executions"]
    return found


def test_a_dry_run_reads_the_headers_and_starts_nothing(api: Api) -> None:
    put_archive(api)
    answer = api.client.post(
        "/backfills", json={"location": f"s3://{BUCKET}/archive/2024/", "dry_run": True}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["objects"] == 2 and body["probed"] == 2 and not body["extrapolated"]
    assert body["existing_jobs"] == 0 and body["refused"] == 0
    assert 0.1 < body["audio_minutes"] < 2
    assert body["cost"]["by_service"]["Transcribe"] > 0
    assert executions(api) == []
    assert api.aws.ddb.scan(TableName=TABLE)["Items"] == []  # no job either


def test_a_dry_run_over_a_bundle_that_transcribes_itself_prices_no_transcribe(
    make_api: Callable[..., Api], monkeypatch: pytest.MonkeyPatch, offline_bundle: Path
) -> None:
    """The default bundle makes its own transcripts (its recipe, read from the manifest):
    the estimate counts no Transcribe job, whatever TRANSCRIBE_POLICY says."""
    from alertfusion.catalog import reset_catalog

    monkeypatch.setenv("MODEL_BUNDLE", str(offline_bundle))
    monkeypatch.delenv("MODEL_BUNDLES", raising=False)
    reset_catalog()
    try:
        api = make_api()
        put_archive(api)
        answer = api.client.post("/backfills", json={"location": "archive/2024/", "dry_run": True})
        assert answer.status_code == 200, answer.text
        cost = answer.json()["cost"]
        assert cost["by_service"].get("Transcribe", 0) == 0
        assert any("speech-to-text model" in a for a in cost["assumptions"])
    finally:
        reset_catalog()


def test_a_backfill_starts_an_execution_with_the_run_input(api: Api) -> None:
    put_archive(api)
    answer = api.client.post(
        "/backfills", json={"location": "archive/2024/", "bundle_version": "v2"}
    )
    assert answer.status_code == 202, answer.text
    started = answer.json()
    assert answer.headers["location"].endswith(f"/backfills/{started['backfill_id']}")
    (execution,) = executions(api)
    assert execution["name"] == started["backfill_id"]
    status = api.client.get(f"/backfills/{started['backfill_id']}")
    assert status.status_code == 200, status.text
    body = status.json()
    assert body["status"] == "RUNNING" and body["final"] is False
    assert (body["prefix"], body["bundle_version"]) == ("archive/2024/", "v2")
    assert body["summary"]["objects"] == 0
    assert status.headers["retry-after"] == "10"


def test_the_status_counts_the_batches_written_so_far(api: Api) -> None:
    started = api.client.post("/backfills", json={"location": "archive/"}).json()
    batch = {
        "backfill_id": started["backfill_id"],
        "first_index": 0,
        "checks": 2,
        "items": [
            {"key": "archive/a.wav", "index": 0, "action": "new", "state": "DONE",
             "job_id": "01JEK2Q4ZB4N3P8T6W5Y7X9A1C", "label": "help", "bundle_version": "v1",
             "transcribed": True, "duration_s": 5.0},
            {"key": "archive/b.wav", "index": 1, "action": "rejected", "state": "FAILED",
             "reason": "UNSUPPORTED_FORMAT"},
        ],
    }  # fmt: skip
    api.aws.s3.put_object(
        Bucket=BUCKET,
        Key=f"backfills/{started['backfill_id']}/batches/000000000.json",
        Body=json.dumps(batch).encode(),
    )
    summary = api.client.get(f"/backfills/{started['backfill_id']}").json()["summary"]
    assert summary["objects"] == 2 and summary["batches"] == 1
    assert summary["states"] == {"DONE": 1, "FAILED": 1}
    assert summary["labels"] == {"help": 1}
    assert summary["failures"] == {"UNSUPPORTED_FORMAT": 1}
    assert summary["transcribe_jobs"] == 1
    # Transcribe bills at least 15 s a job: 5 s of audio costs a quarter minute
    assert summary["cost"]["by_service"]["Transcribe"] == pytest.approx(0.25 * 0.024)


@pytest.mark.parametrize(
    ("location", "status", "code"),
    [
        ("s3://another-bucket/archive/", 403, "FORBIDDEN_LOCATION"),
        ("transcripts/", 403, "FORBIDDEN_LOCATION"),
        ("private/", 403, "FORBIDDEN_LOCATION"),
        ("archive/../results/", 422, "INVALID_INPUT"),
    ],
)
def test_locations_outside_the_backfill_prefixes_are_refused(
    api: Api, location: str, status: int, code: str
) -> None:
    answer = api.client.post("/backfills", json={"location": location, "dry_run": True})
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code
    assert executions(api) == []


def test_unknown_and_malformed_backfill_ids(api: Api) -> None:
    unknown = api.client.get("/backfills/01JEK2Q4ZB4N3P8T6W5Y7X9A1C")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "BACKFILL_NOT_FOUND"
    assert api.client.get("/backfills/not-an-id").status_code == 422


def test_backfills_need_the_api_key(make_api: Callable[..., Api]) -> None:
    api = make_api(api_key=API_KEY)
    assert api.client.post("/backfills", json={"location": "archive/"}).status_code == 401
    assert api.client.get("/backfills/01JEK2Q4ZB4N3P8T6W5Y7X9A1C").status_code == 401
    answer = api.client.post(
        "/backfills",
        json={"location": "archive/", "dry_run": True},
        headers={"x-api-key": API_KEY},
    )
    assert answer.status_code == 200
