"""`POST /uploads`: the job, the presigned POST (its policy checked condition by condition,
since moto does not enforce presigned POST conditions), idempotency, refusals."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from alertfusion.jobs import JobStatus
from alertfusion.keys import is_job_id, new_job_id
from tests.integration.api.conftest import BUCKET, Api
from tests.integration.api.test_app import error_of

pytestmark = pytest.mark.integration

MAX_UPLOAD = 50 * 1024 * 1024


def policy_of(fields: dict[str, str]) -> dict[str, Any]:
    policy: dict[str, Any] = json.loads(base64.b64decode(fields["policy"]))
    return policy


def conditions_by_kind(policy: dict[str, Any]) -> tuple[dict[str, str], list[list[Any]]]:
    """(exact-match conditions as {field: value}, array conditions)."""
    exact: dict[str, str] = {}
    arrays: list[list[Any]] = []
    for condition in policy["conditions"]:
        if isinstance(condition, dict):
            assert len(condition) == 1
            exact.update(condition)
        else:
            arrays.append(condition)
    return exact, arrays


def test_creates_a_pending_job_and_a_presigned_post(api: Api) -> None:
    before = datetime.now(UTC)
    response = api.client.post("/uploads", json={"content_type": "audio/mp4"})
    assert response.status_code == 201
    body = response.json()
    job_id = body["job_id"]
    assert is_job_id(job_id)
    assert body["status"] == "UPLOAD_PENDING" and body["replayed"] is False
    # a path, never the client's Host header (PUBLIC_BASE_URL or API Gateway make it absolute)
    assert body["poll_url"] == f"/jobs/{job_id}"
    assert response.headers["location"] == body["poll_url"]

    upload = body["upload"]
    key = f"uploads/{job_id}.m4a"
    assert upload["key"] == key and upload["fields"]["key"] == key
    assert upload["content_type"] == upload["fields"]["Content-Type"] == "audio/mp4"
    assert upload["max_bytes"] == MAX_UPLOAD

    job = api.aws.job(job_id)
    assert job.status is JobStatus.UPLOAD_PENDING
    assert job.source == "api"
    assert job.object_key == key
    assert job.client_transcript is None

    policy = policy_of(upload["fields"])
    exact, arrays = conditions_by_kind(policy)
    assert exact["bucket"] == BUCKET
    assert exact["key"] == key  # exact key, no ${filename}, no starts-with
    assert not any(c[0] == "starts-with" and c[1] == "$key" for c in arrays)
    assert exact["Content-Type"] == "audio/mp4"  # exactly the type asked for
    assert ["content-length-range", 1, MAX_UPLOAD] in arrays
    # the signing fields are conditions too
    for name in ("x-amz-algorithm", "x-amz-credential", "x-amz-date"):
        assert exact[name] == upload["fields"][name]
    expiration = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    assert before + timedelta(seconds=110) <= expiration <= before + timedelta(seconds=121)
    stated = datetime.fromisoformat(upload["expires_at"].replace("Z", "+00:00"))
    assert abs((stated - expiration).total_seconds()) < 5


def test_the_presigned_post_uploads_to_the_key(api: Api) -> None:
    """moto accepts the POST (it does not check the policy; see the test above)."""
    body = api.client.post("/uploads", json={"filename": "녹음 1.WAV"}).json()
    upload = body["upload"]
    assert upload["key"].endswith(".wav")
    sent = requests.post(
        upload["url"],
        data=upload["fields"],
        files={"file": ("ignored-name.wav", b"RIFF" + bytes(64), "audio/wav")},
        timeout=10,
    )
    assert sent.status_code in (200, 201, 204), sent.text
    head = api.aws.s3.head_object(Bucket=BUCKET, Key=upload["key"])
    assert head["ContentType"] == "audio/wav"
    assert head["ContentLength"] == 68


@pytest.mark.parametrize(
    ("request_body", "ext", "content_type"),
    [
        ({"content_type": "audio/webm;codecs=opus"}, "webm", "audio/webm"),
        ({"content_type": "video/mp4"}, "mp4", "audio/mp4"),
        ({"content_type": "application/ogg"}, "ogg", "audio/ogg"),
        ({"content_type": "AUDIO/X-WAV"}, "wav", "audio/x-wav"),
        ({"filename": "call.3gp"}, "3gp", "audio/3gpp"),
        ({"filename": "a.b.AMR"}, "amr", "audio/amr"),
        ({"content_type": "audio/mpeg", "filename": "x.wav"}, "mp3", "audio/mpeg"),
    ],
)
def test_extension_and_content_type(
    api: Api, request_body: dict[str, str], ext: str, content_type: str
) -> None:
    body = api.client.post("/uploads", json=request_body).json()
    assert body["upload"]["key"] == f"uploads/{body['job_id']}.{ext}"
    assert body["upload"]["fields"]["Content-Type"] == content_type
    assert content_type.startswith("audio/")  # what the policy demands


@pytest.mark.parametrize(
    ("request_body", "status", "code"),
    [
        ({"content_type": "image/png"}, 415, "UNSUPPORTED_FORMAT"),
        ({"content_type": "text/plain"}, 415, "UNSUPPORTED_FORMAT"),
        ({"filename": "notes.txt"}, 415, "UNSUPPORTED_FORMAT"),
        ({"filename": ".wav"}, 415, "UNSUPPORTED_FORMAT"),
        ({"filename": "noextension"}, 415, "UNSUPPORTED_FORMAT"),
        ({}, 422, "INVALID_INPUT"),
        ({"content_type": "audio/wav", "transcript": "   "}, 422, "INVALID_INPUT"),
        ({"content_type": "audio/wav", "transcript": "가" * 5001}, 422, "TEXT_TOO_LONG"),
        ({"content_type": "audio/wav", "extra": 1}, 422, "INVALID_INPUT"),
    ],
)
def test_refusals(api: Api, request_body: dict[str, Any], status: int, code: str) -> None:
    response = api.client.post("/uploads", json=request_body)
    assert response.status_code == status
    assert error_of(response)["code"] == code
    # nothing was created
    assert api.aws.ddb.scan(TableName="alertfusion-test-jobs")["Count"] == 0


def test_not_json_is_422(api: Api) -> None:
    response = api.client.post(
        "/uploads", content=b"content_type=audio/wav", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 422
    assert error_of(response)["code"] == "INVALID_INPUT"


def test_transcript_is_stored_on_the_job(api: Api) -> None:
    text = "도와주세요 여기 사람이 쓰러졌어요"
    body = api.client.post(
        "/uploads", json={"content_type": "audio/wav", "transcript": text}
    ).json()
    assert body["transcript_supplied"] is True
    assert api.aws.job(body["job_id"]).client_transcript == text


def test_idempotency_key_returns_the_same_job_with_a_fresh_post(api: Api) -> None:
    headers = {"Idempotency-Key": "app-install-7/recording-42"}
    request_body = {"content_type": "audio/mp4", "transcript": "살려주세요"}
    first = api.client.post("/uploads", json=request_body, headers=headers)
    second = api.client.post("/uploads", json=request_body, headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    a, b = first.json(), second.json()
    assert a["job_id"] == b["job_id"]
    assert b["replayed"] is True and a["replayed"] is False
    assert a["upload"]["key"] == b["upload"]["key"]
    assert policy_of(b["upload"]["fields"])["conditions"]
    # one job, one idempotency record
    items = api.aws.ddb.scan(TableName="alertfusion-test-jobs")["Items"]
    assert sorted(i["job_id"]["S"].split("#")[0] for i in items) == [a["job_id"], "idempotency"]
    idem = next(i for i in items if i["job_id"]["S"].startswith("idempotency#"))
    assert "status" not in idem  # keeps the by_status index sparse
    assert "app-install-7" not in json.dumps(idem)  # the client's key is stored hashed
    # a different key is a different job
    other = api.client.post("/uploads", json=request_body, headers={"Idempotency-Key": "k2"})
    assert other.json()["job_id"] != a["job_id"]


def test_idempotency_key_with_another_body_is_422(api: Api) -> None:
    headers = {"Idempotency-Key": "same-key"}
    assert api.client.post(
        "/uploads", json={"content_type": "audio/mp4"}, headers=headers
    ).is_success
    response = api.client.post("/uploads", json={"content_type": "audio/wav"}, headers=headers)
    assert response.status_code == 422
    assert error_of(response)["code"] == "IDEMPOTENCY_CONFLICT"


def test_a_retry_while_the_first_request_runs_gets_the_same_job(api: Api) -> None:
    """The Idempotency-Key draft answers 409 to a retry while the first request is in
    flight; here both requests make the same job, so the retry answers it and the first
    request still completes with it."""
    from functions.api.deps import get_pipeline
    from functions.api.idempotency import IdempotencyStore, fingerprint
    from functions.api.models import UploadRequest
    from functions.api.routers.uploads import _ensure_job

    request_body = {"content_type": "audio/wav"}
    pipeline = get_pipeline()
    store = IdempotencyStore(pipeline.settings.jobs_table, pipeline.dynamodb, ttl_days=1)
    # the first request has claimed the key and not yet written its job
    body_print = fingerprint(UploadRequest.model_validate(request_body).model_dump_json())
    first = store.claim("in-flight", body_print, new_job_id())
    assert first.replayed is False

    retry = api.client.post("/uploads", json=request_body, headers={"Idempotency-Key": "in-flight"})
    assert retry.status_code == 200
    assert (retry.json()["job_id"], retry.json()["replayed"]) == (first.job_id, True)
    key = retry.json()["upload"]["key"]
    # the first request now writes its job: the retry's record is that job
    status = _ensure_job(pipeline, first.job_id, key, "audio/wav", None, replayed=False)
    assert status is JobStatus.UPLOAD_PENDING
    assert api.aws.job(first.job_id).object_key == key


def test_replay_recreates_a_job_a_crashed_first_attempt_never_wrote(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alertfusion.jobs import JobStore

    real = JobStore.create_pending
    calls = {"n": 0}

    def crash_once(self: JobStore, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("the process died here")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(JobStore, "create_pending", crash_once)
    headers = {"Idempotency-Key": "retry-after-crash"}
    first = api.client.post("/uploads", json={"content_type": "audio/wav"}, headers=headers)
    assert first.status_code == 500
    second = api.client.post("/uploads", json={"content_type": "audio/wav"}, headers=headers)
    assert second.status_code == 200 and second.json()["replayed"] is True
    assert api.aws.job(second.json()["job_id"]).status is JobStatus.UPLOAD_PENDING


@pytest.mark.parametrize("key", ["", "has space", "é", "x" * 256])
def test_malformed_idempotency_keys_are_422(api: Api, key: str) -> None:
    response = api.client.post(
        "/uploads",
        json={"content_type": "audio/wav"},
        headers={b"Idempotency-Key": key.encode("utf-8")},
    )
    assert response.status_code == 422
    assert error_of(response)["code"] == "INVALID_INPUT"


def test_expiry_and_limit_follow_the_settings(
    make_api: Callable[..., Api], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.integration.conftest import configure

    configure(monkeypatch, MAX_UPLOAD_BYTES="1234")
    from functions.api.deps import reset_pipeline

    reset_pipeline()
    api = make_api(upload_url_expires_seconds=60)
    body = api.client.post("/uploads", json={"content_type": "audio/wav"}).json()
    policy = policy_of(body["upload"]["fields"])
    assert ["content-length-range", 1, 1234] in policy["conditions"]
    expiration = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    assert expiration <= datetime.now(UTC) + timedelta(seconds=61)


def test_expiry_above_15_minutes_is_refused_at_start() -> None:
    from tests.integration.api.conftest import settings

    with pytest.raises(ValueError, match="UPLOAD_URL_EXPIRES_SECONDS|upload_url"):
        settings(upload_url_expires_seconds=901)
