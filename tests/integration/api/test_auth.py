"""End-user identity through the HTTP API (AUTH_MODE=cognito, signing keys served over HTTP
on 127.0.0.1): every bad token is the same 401, a job is its creator's (404 for anyone else,
never 403), quotas answer 429 with Retry-After, and the API key mode records its client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alertfusion.jobs import UploadInfo
from alertfusion.keys import new_job_id, upload_key
from functions.api.auth import REFUSED_MESSAGE
from functions.api.quotas import QuotaExceeded, QuotaLimits, QuotaStore, next_window
from tests.integration.api.conftest import API_KEY, Api, sample
from tests.integration.api.test_app import error_of
from tests.tokens import ALICE, BOB, Issuer, jwks_server, token_settings

pytestmark = pytest.mark.integration

#: every route that wants a token, and a request that would otherwise pass validation
PROTECTED: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/uploads", {"json": {"content_type": "audio/wav"}}),
    ("GET", f"/jobs/{new_job_id()}", {}),
    ("DELETE", f"/jobs/{new_job_id()}", {}),
    ("POST", "/predict_s3", {"json": {"s3_key": "uploads/x.wav"}}),
    ("POST", "/predict", {"files": {"audio_file": ("a.wav", b"RIFF", "audio/wav")}}),
]


@pytest.fixture
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture
def jwks_url(issuer: Issuer) -> Iterator[str]:
    with jwks_server(issuer) as url:
        yield url


@pytest.fixture
def users(make_api: Callable[..., Api], jwks_url: str) -> Api:
    """The app in AUTH_MODE=cognito, without an engine."""
    return make_api(**token_settings(jwks_url))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create(api: Api, token: str, **body: Any) -> dict[str, Any]:
    response = api.client.post(
        "/uploads", json={"content_type": "audio/wav", **body}, headers=bearer(token)
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


# -- bad tokens ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(Issuer().bad_tokens()))
def test_every_bad_token_is_the_same_401_on_every_protected_route(
    users: Api, issuer: Issuer, kind: str
) -> None:
    token = issuer.bad_tokens()[kind]
    for method, path, request_kwargs in PROTECTED:
        response = users.client.request(method, path, headers=bearer(token), **request_kwargs)
        assert response.status_code == 401, (method, path, response.text)
        error = error_of(response)
        # the same words whatever failed: nothing tells a forger which check to work on
        assert (error["code"], error["message"]) == ("UNAUTHORIZED", REFUSED_MESSAGE)
        assert response.headers["www-authenticate"] == (
            'Bearer realm="alertfusion", error="invalid_token"'
        )
        lowered = response.text.lower()
        for word in ("expired", "signature", "audience", "issuer", "kid", "alg", "scope", "jwk"):
            assert word not in lowered
    assert users.aws.ddb.scan(TableName="alertfusion-test-jobs")["Items"] == []


@pytest.mark.parametrize(("method", "path", "request_kwargs"), PROTECTED)
def test_no_token_is_401_and_an_api_key_is_no_substitute(
    users: Api, method: str, path: str, request_kwargs: dict[str, Any]
) -> None:
    response = users.client.request(method, path, **request_kwargs)
    assert response.status_code == 401
    assert error_of(response)["code"] == "UNAUTHORIZED"
    assert response.headers["www-authenticate"] == 'Bearer realm="alertfusion"'
    keyed = users.client.request(method, path, headers={"x-api-key": API_KEY}, **request_kwargs)
    assert keyed.status_code == 401


def test_open_routes_need_no_token(users: Api) -> None:
    for path in ("/healthz", "/openapi.json", "/auth/config", "/upload"):
        assert users.client.get(path).status_code == 200, path
    config = users.client.get("/auth/config").json()
    assert config["mode"] == "cognito" and config["token"] == "access"
    assert config["client_id"] == users.app.state.settings.auth_audience[0]
    assert config["local"] is None  # no demo users outside the local stack


def test_keys_unreachable_is_503_not_401(make_api: Callable[..., Api]) -> None:
    api = make_api(**token_settings("http://127.0.0.1:9/jwks.json"))  # nothing listens there
    response = api.client.get(f"/jobs/{new_job_id()}", headers=bearer(Issuer().token()))
    assert response.status_code == 503
    assert error_of(response)["code"] == "UPSTREAM_UNAVAILABLE"


def test_signing_keys_are_fetched_once_for_many_requests(users: Api, issuer: Issuer) -> None:
    for _ in range(5):
        users.client.get(f"/jobs/{new_job_id()}", headers=bearer(issuer.token()))
    assert len(issuer.served) == 1


# -- ownership ------------------------------------------------------------------------------------


def test_a_job_records_its_creator(users: Api, issuer: Issuer) -> None:
    job = create(users, issuer.token(ALICE))
    assert users.aws.job(job["job_id"]).owner == f"user:{ALICE}"
    mine = users.client.get(f"/jobs/{job['job_id']}", headers=bearer(issuer.token(ALICE)))
    assert mine.status_code == 200 and mine.json()["status"] == "UPLOAD_PENDING"


def test_another_users_job_is_404_exactly_like_a_missing_one(users: Api, issuer: Issuer) -> None:
    job_id = create(users, issuer.token(ALICE))["job_id"]
    bob = bearer(issuer.token(BOB))
    theirs = users.client.get(f"/jobs/{job_id}", headers=bob)
    missing = users.client.get(f"/jobs/{new_job_id()}", headers=bob)
    assert theirs.status_code == missing.status_code == 404
    shown, absent = error_of(theirs), error_of(missing)
    assert shown["code"] == absent["code"] == "JOB_NOT_FOUND"
    missing_id = missing.request.url.path.rsplit("/", 1)[-1]
    assert shown["message"].replace(job_id, "<id>") == absent["message"].replace(missing_id, "<id>")
    assert set(theirs.headers) == set(missing.headers)
    # nor can Bob delete it: Alice's job is untouched
    assert users.client.delete(f"/jobs/{job_id}", headers=bob).status_code == 404
    assert users.aws.job(job_id).status.value == "UPLOAD_PENDING"


def test_a_users_idempotency_key_never_finds_another_users_job(users: Api, issuer: Issuer) -> None:
    headers = {"Idempotency-Key": "recording-1"}
    alice = users.client.post(
        "/uploads",
        json={"content_type": "audio/wav"},
        headers={**headers, **bearer(issuer.token(ALICE))},
    )
    bob = users.client.post(
        "/uploads",
        json={"content_type": "audio/wav"},
        headers={**headers, **bearer(issuer.token(BOB))},
    )
    assert (alice.status_code, bob.status_code) == (201, 201)
    assert alice.json()["job_id"] != bob.json()["job_id"]


def test_predict_s3_reads_only_the_users_own_recordings(users: Api, issuer: Issuer) -> None:
    alice_job = create(users, issuer.token(ALICE))
    key = alice_job["upload"]["key"]
    users.put(key, sample("ko-help-16k.wav"))
    users.put("uploads/dropped-by-hand.wav", sample("ko-help-16k.wav"))
    bob = bearer(issuer.token(BOB))
    for where in (key, "uploads/dropped-by-hand.wav", "uploads/no-such-object.wav"):
        response = users.client.post("/predict_s3", json={"s3_key": where}, headers=bob)
        assert response.status_code == 404, where
        assert error_of(response)["code"] == "OBJECT_NOT_FOUND"


def test_recordings_dropped_into_the_bucket_are_for_servers_not_users(
    make_api: Callable[..., Api], users: Api, issuer: Issuer
) -> None:
    job_id = new_job_id()
    info = UploadInfo(
        object_key=upload_key(job_id, "wav"),
        extension="wav",
        size_bytes=1000,
        content_type="audio/wav",
        etag="abc",
        version_id=None,
        uploaded_at=datetime.now(UTC),
    )
    users.aws.store.receive(job_id, info)
    assert users.client.get(f"/jobs/{job_id}", headers=bearer(issuer.token())).status_code == 404
    servers = make_api(api_key=API_KEY)
    assert servers.client.get(f"/jobs/{job_id}", headers={"x-api-key": API_KEY}).is_success


def test_api_key_mode_records_the_keys_client(make_api: Callable[..., Api]) -> None:
    api = make_api(api_key=API_KEY)
    created = api.client.post(
        "/uploads", json={"content_type": "audio/wav"}, headers={"x-api-key": API_KEY}
    )
    assert created.status_code == 201
    owner = api.aws.job(created.json()["job_id"]).owner
    assert owner is not None and owner.startswith("apikey:") and API_KEY not in owner
    config = api.client.get("/auth/config").json()
    assert config == {
        "mode": "api_key",
        "client_id": None,
        "hosted_ui_url": None,
        "scopes": [],
        "token": None,
        "local": None,
    }


# -- quotas ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("clear_of_the_hour")
def test_uploads_over_the_hourly_quota_are_429_with_retry_after(
    make_api: Callable[..., Api], jwks_url: str, issuer: Issuer
) -> None:
    api = make_api(**token_settings(jwks_url, quota_uploads_per_hour=2, quota_uploads_per_day=5))
    alice = bearer(issuer.token(ALICE))
    for _ in range(2):
        create(api, issuer.token(ALICE))
    refused = api.client.post("/uploads", json={"content_type": "audio/wav"}, headers=alice)
    assert refused.status_code == 429
    error = error_of(refused)
    assert error["code"] == "QUOTA_EXCEEDED" and "2 uploads per hour" in error["message"]
    retry = int(refused.headers["retry-after"])
    now = datetime.now(UTC)
    assert 1 <= retry <= (next_window(now, "hour") - now).total_seconds() + 2
    # a refused request counts nothing; Bob has his own quota
    store = QuotaStore("alertfusion-test-jobs", api.aws.ddb)
    assert store.used(f"user:{ALICE}", "uploads", now)[0] == 2
    create(api, issuer.token(BOB))
    assert store.used(f"user:{BOB}", "uploads", now)[0] == 1
    assert store.used(f"user:{ALICE}", "uploads", now)[0] == 2  # Bob's upload is not Alice's
    # the job records made: exactly the admitted ones
    owners = [str(api.aws.job(i["job_id"]["S"]).owner) for i in _job_items(api)]
    assert sorted(owners) == sorted([f"user:{ALICE}"] * 2 + [f"user:{BOB}"])


def test_the_windows_turn_on_the_clock_hour_and_the_utc_day(make_api: Callable[..., Api]) -> None:
    store = QuotaStore("alertfusion-test-jobs", make_api().aws.ddb)
    limits = QuotaLimits(per_hour=2, per_day=3)
    late = datetime(2026, 3, 1, 22, 59, 59, tzinfo=UTC)
    store.take("user:carol", "uploads", limits, now=late)
    store.take("user:carol", "uploads", limits, now=late)
    with pytest.raises(QuotaExceeded) as hourly:
        store.take("user:carol", "uploads", limits, now=late)
    assert (hourly.value.details["window"], hourly.value.retry_after) == ("hour", 1)
    store.take("user:carol", "uploads", limits, now=late + timedelta(seconds=1))  # 23:00
    assert store.used("user:carol", "uploads", late + timedelta(seconds=1)) == (1, 3)
    with pytest.raises(QuotaExceeded) as daily:
        store.take("user:carol", "uploads", limits, now=late + timedelta(minutes=30))
    assert daily.value.details["window"] == "day"
    assert daily.value.retry_after == 3600 - 29 * 60 - 59
    store.take("user:carol", "uploads", limits, now=late + timedelta(hours=1, seconds=1))
    assert store.used("user:carol", "uploads", late + timedelta(hours=1, seconds=1)) == (1, 1)


@pytest.mark.usefixtures("clear_of_the_hour")
def test_the_daily_quota_says_when_the_day_ends(
    make_api: Callable[..., Api], jwks_url: str, issuer: Issuer
) -> None:
    api = make_api(**token_settings(jwks_url, quota_uploads_per_hour=1, quota_uploads_per_day=1))
    create(api, issuer.token(ALICE))
    refused = api.client.post(
        "/uploads", json={"content_type": "audio/wav"}, headers=bearer(issuer.token(ALICE))
    )
    assert refused.status_code == 429 and "1 uploads per day" in error_of(refused)["message"]
    now = datetime.now(UTC)
    until_tomorrow = (next_window(now, "day") - now).total_seconds()
    assert int(refused.headers["retry-after"]) >= until_tomorrow - 5


@pytest.mark.usefixtures("clear_of_the_hour")
def test_an_idempotent_replay_does_not_count_again(
    make_api: Callable[..., Api], jwks_url: str, issuer: Issuer
) -> None:
    api = make_api(**token_settings(jwks_url, quota_uploads_per_hour=1))
    headers = {"Idempotency-Key": "rec-1", **bearer(issuer.token(ALICE))}
    first = api.client.post("/uploads", json={"content_type": "audio/wav"}, headers=headers)
    again = api.client.post("/uploads", json={"content_type": "audio/wav"}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["job_id"] == first.json()["job_id"]


@pytest.mark.usefixtures("clear_of_the_hour")
def test_predictions_have_their_own_quota(
    make_api: Callable[..., Api], jwks_url: str, issuer: Issuer, engine: Any
) -> None:
    api = make_api(
        engine=engine,
        **token_settings(jwks_url, quota_predictions_per_hour=1, quota_uploads_per_hour=1),
    )
    alice = bearer(issuer.token(ALICE))
    files = {"audio_file": ("help.wav", sample("ko-help-16k.wav"), "audio/wav")}
    assert api.client.post("/predict", files=files, headers=alice).status_code == 200
    refused = api.client.post("/predict", files=files, headers=alice)
    assert refused.status_code == 429 and error_of(refused)["code"] == "QUOTA_EXCEEDED"
    assert "predictions per hour" in error_of(refused)["message"]
    create(api, issuer.token(ALICE))  # uploads are counted apart


def test_api_keys_are_not_counted_by_the_user_quotas(make_api: Callable[..., Api]) -> None:
    api = make_api(api_key=API_KEY, quota_uploads_per_hour=1)
    for _ in range(3):
        response = api.client.post(
            "/uploads", json={"content_type": "audio/wav"}, headers={"x-api-key": API_KEY}
        )
        assert response.status_code == 201


def _job_items(api: Api) -> list[dict[str, Any]]:
    items = api.aws.ddb.scan(TableName="alertfusion-test-jobs")["Items"]
    return [i for i in items if "status" in i]
