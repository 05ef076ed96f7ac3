"""Signed test tokens: an issuer with its own RSA key and JWKS, and every kind of bad token
(expired, signed by another key, wrong audience or issuer, `alg: none`, HMAC with the public
key, malformed, the wrong `token_use`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey

ISSUER = "https://cognito-idp.ap-northeast-2.amazonaws.com/ap-northeast-2_TestPool1"
CLIENT_ID = "4f1m2testclient0000000000"
SCOPE = "aws.cognito.signin.user.admin"
ALICE = "3f2a9c1e-0b7d-4e58-9a61-2c4d8e0f1a2b"
BOB = "8d5e0c4b-7a19-4f2e-b3c6-1e9d0a7f5b24"

_KEYS: dict[str, RSAKey] = {}


def rsa_key(kid: str) -> RSAKey:
    """One 2048-bit key per kid for the whole session (generating one takes ~50 ms)."""
    if kid not in _KEYS:
        _KEYS[kid] = RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig"})
    return _KEYS[kid]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class Issuer:
    """A token issuer like a Cognito user pool: signs access tokens with its key."""

    kid: str = "test-key-1"
    issuer: str = ISSUER
    client_id: str = CLIENT_ID
    #: every JWKS document served, for counting fetches
    served: list[float] = field(default_factory=list)

    @property
    def key(self) -> RSAKey:
        return rsa_key(self.kid)

    def jwks(self) -> dict[str, Any]:
        public = self.key.as_dict(private=False)
        return {"keys": [{**public, "alg": "RS256", "use": "sig", "kid": self.kid}]}

    def claims(self, subject: str = ALICE, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "client_id": self.client_id,
            "token_use": "access",
            "scope": SCOPE,
            "iat": now,
            "auth_time": now,
            "exp": now + 3600,
            "username": {ALICE: "alice", BOB: "bob"}.get(subject, "someone"),
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(
        self,
        subject: str = ALICE,
        *,
        key: RSAKey | None = None,
        kid: str | None = None,
        **claims: Any,
    ) -> str:
        header = {"alg": "RS256", "kid": kid or self.kid}
        return jwt.encode(header, self.claims(subject, **claims), key or self.key)

    def bad_tokens(self) -> dict[str, str]:
        """Every kind of token the API must refuse, by name."""
        now = int(time.time())
        forger = rsa_key("forger")
        good = self.token()
        head, body, _signature = good.split(".")
        unsigned_header = _b64(json.dumps({"alg": "none", "kid": self.kid}).encode())
        # the classic confusion: HMAC keyed with the (public) RSA key, as a naive verifier
        # that lets the token choose its algorithm would check it
        hmac_header = _b64(json.dumps({"alg": "HS256", "kid": self.kid}).encode())
        signed = f"{hmac_header}.{body}".encode()
        tampered = _b64(json.dumps(self.claims(BOB)).encode())
        mac = hmac.new(self.key.as_pem(private=False), signed, hashlib.sha256).digest()
        return {
            "expired": self.token(exp=now - 3600, iat=now - 7200),
            "wrongly_signed": self.token(key=forger),
            "wrong_audience": self.token(client_id="another-app-client"),
            "wrong_issuer": self.token(
                iss="https://cognito-idp.ap-northeast-2.amazonaws.com/ap-northeast-2_Other"
            ),
            "alg_none": f"{unsigned_header}.{body}.",
            "hmac_with_the_public_key": f"{hmac_header}.{body}.{_b64(mac)}",
            "malformed": "not-a-token",
            "malformed_segments": f"{head}.{body}",
            "garbage_base64": "eyJ!!!.eyJ???.sig",
            "tampered_payload": f"{head}.{tampered}.{_signature}",
            "wrong_token_use": self.token(token_use="id", aud=self.client_id, client_id=None),
            "unknown_kid": self.token(kid="rotated-away", key=rsa_key("rotated-away")),
            "not_yet_valid": self.token(nbf=now + 3600, iat=now + 3600),
            "no_subject": self.token(sub=""),
            "no_expiry": self.token(exp=None),
            "missing_scope": self.token(scope="openid"),
        }


class _JwksHandler(BaseHTTPRequestHandler):
    issuer: Issuer

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path != "/jwks.json":
            self.send_error(404)
            return
        self.issuer.served.append(time.time())
        body = json.dumps(self.issuer.jwks()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests count fetches instead."""


@contextmanager
def jwks_server(issuer: Issuer) -> Iterator[str]:
    """The issuer's JWKS over HTTP on 127.0.0.1 (what AUTH_JWKS_URL points at): its URL."""
    handler = type("Handler", (_JwksHandler,), {"issuer": issuer})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="test-jwks", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def token_settings(jwks_url: str, **overrides: Any) -> dict[str, Any]:
    """ApiSettings fields of AUTH_MODE=cognito for `Issuer()` (field names, lower case)."""
    return {
        "auth_mode": "cognito",
        "auth_issuer": ISSUER,
        "auth_audience": CLIENT_ID,
        "auth_scope": SCOPE,
        "auth_jwks_url": jwks_url,
        **overrides,
    }
