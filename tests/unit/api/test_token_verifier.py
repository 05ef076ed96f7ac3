"""Bearer tokens: each kind of bad token is refused by the check meant for it, good ones give
the user, and the signing keys are fetched once, refreshed on rotation and never flooded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from alertfusion.errors import ReasonCode, TransientError
from functions.api.auth import (
    MIN_REFRESH_SECONDS,
    REFUSED_MESSAGE,
    Principal,
    SigningKeys,
    TokenRefused,
    TokenVerifier,
    bearer_token,
)
from functions.api.settings import ApiSettings
from tests.tokens import ALICE, CLIENT_ID, ISSUER, SCOPE, Issuer, rsa_key

pytestmark = pytest.mark.unit

#: which check must refuse each bad token (the client never learns it: see test_auth.py)
EXPECTED_REASON = {
    "expired": "expired",
    "wrongly_signed": "signature",
    "wrong_audience": "audience",
    "wrong_issuer": "issuer",
    "alg_none": "algorithm",
    "hmac_with_the_public_key": "algorithm",
    "malformed": "malformed",
    "malformed_segments": "malformed",
    "garbage_base64": "malformed",
    "tampered_payload": "signature",
    "wrong_token_use": "token_use",
    "unknown_kid": "unknown_key",
    "not_yet_valid": "not_yet_valid",
    "no_subject": "subject",
    "no_expiry": "expired",
    "missing_scope": "scope",
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fetcher(issuer: Issuer) -> tuple[Callable[[str], dict[str, Any]], list[str]]:
    urls: list[str] = []

    def fetch(url: str) -> dict[str, Any]:
        urls.append(url)
        return issuer.jwks()

    return fetch, urls


def verifier(issuer: Issuer, **kwargs: Any) -> TokenVerifier:
    fetch, _ = fetcher(issuer)
    keys = SigningKeys(lambda: "https://issuer.example/jwks.json", ttl_s=3600, fetch=fetch)
    options: dict[str, Any] = {
        "issuer": ISSUER,
        "audiences": [CLIENT_ID],
        "keys": keys,
        "token_use": "access",
        "scope": SCOPE,
        "cognito": True,
    }
    options.update(kwargs)
    return TokenVerifier(**options)


def test_every_test_token_kind_has_an_expected_check() -> None:
    assert set(Issuer().bad_tokens()) == set(EXPECTED_REASON)


@pytest.mark.parametrize("kind", sorted(EXPECTED_REASON))
def test_each_bad_token_is_refused_by_its_own_check(kind: str) -> None:
    issuer = Issuer()
    with pytest.raises(TokenRefused) as refused:
        verifier(issuer).verify(issuer.bad_tokens()[kind])
    assert refused.value.reason == EXPECTED_REASON[kind]
    # one public face for every refusal
    assert refused.value.code is ReasonCode.UNAUTHORIZED
    assert refused.value.message == REFUSED_MESSAGE
    challenge = refused.value.details["http_headers"]["WWW-Authenticate"]
    assert challenge == 'Bearer realm="alertfusion", error="invalid_token"'


def test_a_good_token_gives_the_user() -> None:
    issuer = Issuer()
    user = verifier(issuer).verify(issuer.token(ALICE))
    assert user == Principal("user", ALICE, "alice")
    assert user.owner == f"user:{ALICE}" and user.is_user


def test_id_tokens_and_other_issuers_check_aud() -> None:
    issuer = Issuer()
    id_token = issuer.token(token_use="id", aud=CLIENT_ID, client_id=None, scope=None)
    assert verifier(issuer, token_use="id", scope=None).verify(id_token).subject == ALICE
    # a generic OpenID Connect issuer: no token_use, `aud` may be a list
    oidc = verifier(issuer, token_use=None, scope=None, cognito=False)
    listed = issuer.token(aud=["other", CLIENT_ID], client_id=None, token_use=None)
    assert oidc.verify(listed).subject == ALICE
    with pytest.raises(TokenRefused) as refused:  # client_id is no audience outside Cognito
        oidc.verify(issuer.token(aud=None, token_use=None))
    assert refused.value.reason == "audience"


def test_clock_skew_within_the_leeway_is_tolerated() -> None:
    issuer = Issuer()
    clock = FakeClock()
    clock.now = 2_000_000_000
    skewed = issuer.token(exp=int(clock.now) - 30, iat=int(clock.now) + 30)
    assert verifier(issuer, clock=clock).verify(skewed).subject == ALICE


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("Basic YWxpY2U6cGFzcw==", "malformed"),
        ("Bearer", "malformed"),
        ("Bearer   ", "malformed"),
    ],
)
def test_authorization_headers_without_a_bearer_token(header: str | None, reason: str) -> None:
    with pytest.raises(TokenRefused) as refused:
        bearer_token(header)
    assert refused.value.reason == reason
    if reason == "missing":  # RFC 6750: no error code when no token was sent at all
        challenge = refused.value.details["http_headers"]["WWW-Authenticate"]
        assert challenge == 'Bearer realm="alertfusion"'


def test_bearer_scheme_is_case_insensitive() -> None:
    assert bearer_token("bearer abc.def.ghi") == "abc.def.ghi"


def test_keys_are_fetched_once_then_cached_until_their_ttl() -> None:
    issuer = Issuer()
    fetch, urls = fetcher(issuer)
    clock = FakeClock()
    keys = SigningKeys(lambda: "https://x/jwks.json", ttl_s=600, fetch=fetch, clock=clock)
    for _ in range(50):
        assert keys.get(issuer.kid) is not None
    assert len(urls) == 1
    clock.now += 601
    assert keys.get(issuer.kid) is not None
    assert len(urls) == 2


def test_an_unknown_kid_refetches_at_most_every_min_refresh() -> None:
    issuer = Issuer()
    fetch, urls = fetcher(issuer)
    clock = FakeClock()
    keys = SigningKeys(lambda: "https://x/jwks.json", ttl_s=3600, fetch=fetch, clock=clock)
    assert keys.get(issuer.kid) is not None
    for n in range(100):  # a flood of made-up kids
        assert keys.get(f"made-up-{n}") is None
    assert len(urls) == 1  # within MIN_REFRESH_SECONDS of the first fetch: no fetch at all
    clock.now += MIN_REFRESH_SECONDS
    for n in range(100):
        assert keys.get(f"made-up-again-{n}") is None
    assert len(urls) == 2


def test_a_rotated_key_is_picked_up() -> None:
    issuer = Issuer(kid="old")
    fetch, urls = fetcher(issuer)
    clock = FakeClock()
    keys = SigningKeys(lambda: "https://x/jwks.json", ttl_s=3600, fetch=fetch, clock=clock)
    checker = verifier(issuer, keys=keys)
    assert checker.verify(issuer.token()).subject == ALICE
    issuer.kid = "new"  # the issuer rotates: its JWKS now lists only the new key
    clock.now += MIN_REFRESH_SECONDS
    assert checker.verify(issuer.token()).subject == ALICE
    assert len(urls) == 2


def test_only_rsa_signing_keys_are_taken_from_the_jwks() -> None:
    issuer = Issuer()
    rsa = issuer.jwks()["keys"][0]
    document = {
        "keys": [
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {**rsa_key("enc").as_dict(private=False), "kid": "enc", "use": "enc"},
            {**rsa_key("es").as_dict(private=False), "kid": "es", "alg": "RS512"},
            rsa,
        ]
    }
    keys = SigningKeys(lambda: "https://x/jwks.json", ttl_s=3600, fetch=lambda _url: document)
    assert keys.get(issuer.kid) is not None
    assert [keys.get(kid) for kid in ("hmac", "enc", "es")] == [None, None, None]


def test_unreachable_keys_are_the_services_trouble_not_the_callers() -> None:
    def down(url: str) -> dict[str, Any]:
        raise TransientError(f"fetching {url}: URLError")

    issuer = Issuer()
    keys = SigningKeys(lambda: "https://x/jwks.json", ttl_s=3600, fetch=down)
    with pytest.raises(TransientError):
        verifier(issuer, keys=keys).verify(issuer.token())


def test_cached_keys_outlive_a_failed_refresh() -> None:
    issuer = Issuer()
    answers: list[Any] = [issuer.jwks(), TransientError("down")]
    clock = FakeClock()

    def flaky(url: str) -> dict[str, Any]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        result: dict[str, Any] = answer
        return result

    keys = SigningKeys(lambda: "https://x/jwks.json", ttl_s=60, fetch=flaky, clock=clock)
    assert keys.get(issuer.kid) is not None
    clock.now += 61
    assert keys.get(issuer.kid) is not None  # the refresh failed: the cached key still serves


def test_oidc_keys_are_found_through_discovery_of_the_same_issuer() -> None:
    issuer = Issuer(issuer="https://login.example.com/tenant")
    served = {
        "https://login.example.com/tenant/.well-known/openid-configuration": {
            "issuer": "https://login.example.com/tenant",
            "jwks_uri": "https://login.example.com/tenant/keys",
        },
        "https://login.example.com/tenant/keys": issuer.jwks(),
    }
    asked: list[str] = []

    def fetch(url: str) -> dict[str, Any]:
        asked.append(url)
        return served[url]

    settings = ApiSettings.model_validate(
        {
            "AUTH_MODE": "oidc",
            "AUTH_ISSUER": "https://login.example.com/tenant",
            "AUTH_AUDIENCE": "my-app",
        }
    )
    checker = TokenVerifier.from_settings(settings, fetch=fetch)
    token = issuer.token(aud="my-app", client_id=None, token_use=None)
    assert checker.verify(token).subject == ALICE
    assert asked == [
        "https://login.example.com/tenant/.well-known/openid-configuration",
        "https://login.example.com/tenant/keys",
    ]
    # a discovery document naming another issuer is not trusted
    served["https://login.example.com/tenant/.well-known/openid-configuration"]["issuer"] = (
        "https://evil.example.com"
    )
    with pytest.raises(TransientError):
        TokenVerifier.from_settings(settings, fetch=fetch).verify(token)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AUTH_MODE": "cognito"}, "needs AUTH_ISSUER and AUTH_AUDIENCE"),
        (
            {"AUTH_MODE": "oidc", "AUTH_ISSUER": "http://login.example.com", "AUTH_AUDIENCE": "a"},
            "AUTH_ISSUER must be an https URL",
        ),
        (
            {
                "AUTH_MODE": "cognito",
                "AUTH_ISSUER": ISSUER,
                "AUTH_AUDIENCE": "a",
                "AUTH_JWKS_URL": "http://keys.example.com/jwks.json",
            },
            "AUTH_JWKS_URL must be an https (or http on 127.0.0.1",
        ),
        ({"AUTH_ISSUER": ISSUER}, "AUTH_ISSUER set, but AUTH_MODE is api_key"),
        (
            {
                "AUTH_MODE": "cognito",
                "AUTH_ISSUER": ISSUER,
                "AUTH_AUDIENCE": "a",
                "AUTH_DEMO_USERS": "alice",
            },
            "need AUTH_LOCAL_IDP_URL",
        ),
        ({"QUOTA_UPLOADS_PER_HOUR": "50", "QUOTA_UPLOADS_PER_DAY": "10"}, "is above"),
    ],
)
def test_inconsistent_auth_settings_fail_fast(env: dict[str, str], message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message.replace("(", r"\(")):
        ApiSettings.model_validate(env)


def test_cognito_tokens_are_access_tokens_unless_configured() -> None:
    base = {"AUTH_MODE": "cognito", "AUTH_ISSUER": ISSUER, "AUTH_AUDIENCE": CLIENT_ID}
    assert ApiSettings.model_validate(base).token_use == "access"
    assert ApiSettings.model_validate({**base, "AUTH_TOKEN_USE": "id"}).token_use == "id"
    oidc = {**base, "AUTH_MODE": "oidc"}
    assert ApiSettings.model_validate(oidc).token_use is None


def test_api_key_clients_get_a_stable_id_that_is_not_the_key() -> None:
    key = "test-key-0123456789abcdef"
    first, again = Principal.for_api_key(key), Principal.for_api_key(key)
    assert first == again and first.owner.startswith("apikey:")
    assert key not in first.owner and len(first.subject) == 32
    assert Principal.for_api_key("another-key-0123456789").owner != first.owner
    assert Principal.for_api_key(None).owner == "anonymous"


def test_who_may_see_a_job() -> None:
    alice, bob = Principal("user", ALICE), Principal("user", "bob-sub")
    server = Principal.for_api_key("test-key-0123456789abcdef")
    assert alice.may_see(alice.owner) and not bob.may_see(alice.owner)
    assert not server.may_see(alice.owner) and server.may_see(server.owner)
    # a recording dropped into the bucket (no owner): servers and operators, not end users
    assert server.may_see(None) and not alice.may_see(None)
