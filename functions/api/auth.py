"""Who is calling: the API key's client, or a signed-in user whose bearer token (a JWT from a
Cognito user pool or another OpenID Connect issuer) is checked here.

A token is accepted only when all of these hold: three base64url parts; `alg` RS256 (no
`none`, no HMAC: the keys are public); a `kid` the issuer's JWKS lists (fetched over
HTTPS, cached, fetched again at most every `MIN_REFRESH_SECONDS` for an unknown `kid`); the
signature (joserfc); `exp` not past and `nbf`/`iat` not ahead (`LEEWAY_SECONDS` for clock
skew); `iss` the configured issuer; the audience one of the configured ones (`client_id` for
a Cognito access token, `aud` otherwise); `token_use` and `scope` when configured; a `sub`.
Every refusal is the same 401 UNAUTHORIZED for the client, with a `WWW-Authenticate: Bearer`
header and no detail; the reason goes to the log (never the token).

Behind API Gateway with a Cognito pool the gateway's authorizer checks the token first and
the app checks it again: the app never relies on how it is deployed (the EC2 fallback and
the local stack have no gateway), and it needs the subject anyway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from alertfusion.errors import AlertFusionError, ReasonCode, TransientError
from functions.api.log import logger

if TYPE_CHECKING:
    from joserfc.jwk import RSAKey

    from functions.api.settings import ApiSettings

#: the only signature algorithm accepted (Cognito's; every OIDC issuer offers it)
ALGORITHMS = ("RS256",)
#: tolerated clock difference with the issuer
LEEWAY_SECONDS = 60
#: an unknown `kid` fetches the keys again at most this often (issuers rotate rarely; a
#: stream of made-up kids must not turn into a stream of fetches)
MIN_REFRESH_SECONDS = 30
#: longer tokens are refused before anything is decoded
MAX_TOKEN_CHARS = 8192
#: what a JWKS or discovery document may weigh
MAX_DOCUMENT_BYTES = 256 * 1024
FETCH_TIMEOUT_SECONDS = 5.0
#: what every refusal says: nothing that tells a forger which check failed
REFUSED_MESSAGE = "missing or invalid bearer token"
REALM = "alertfusion"

Refusal = Literal[
    "missing",
    "malformed",
    "algorithm",
    "unknown_key",
    "signature",
    "expired",
    "not_yet_valid",
    "issuer",
    "audience",
    "token_use",
    "scope",
    "subject",
]


@dataclass(frozen=True)
class Principal:
    """The caller. `owner` is what jobs record and quotas count: ``user:<sub>`` for a
    signed-in user, ``apikey:<digest>`` for an API key's client (the same key gives the same
    id behind API Gateway, on the fallback and locally), ``anonymous`` where nothing is
    checked (a local stack without API_KEY)."""

    kind: Literal["user", "api_key", "anonymous"]
    subject: str
    #: a display name (Cognito's `username`), for the page and logs only
    name: str | None = None

    @property
    def owner(self) -> str:
        if self.kind == "user":
            return f"user:{self.subject}"
        if self.kind == "api_key":
            return f"apikey:{self.subject}"
        return "anonymous"

    @property
    def is_user(self) -> bool:
        return self.kind == "user"

    def may_see(self, owner: str | None) -> bool:
        """Whether a job of `owner` is this caller's to read and delete: its own; a job with
        no owner (a recording dropped into the bucket, a backfill) only for a caller that is
        not an end user (the API key's client: servers, operators)."""
        if owner is None:
            return not self.is_user
        return owner == self.owner

    @classmethod
    def for_api_key(cls, key: str | None) -> Principal:
        if not key:
            return cls("anonymous", "-")
        return cls("api_key", hashlib.sha256(key.encode("utf-8")).hexdigest()[:32])


class TokenRefused(AlertFusionError):
    """401 UNAUTHORIZED with the one public message; `reason` is for the log only."""

    default_code = ReasonCode.UNAUTHORIZED

    def __init__(self, reason: Refusal) -> None:
        challenge = f'Bearer realm="{REALM}"'
        if reason != "missing":
            challenge += ', error="invalid_token"'
        super().__init__(REFUSED_MESSAGE, details={"http_headers": {"WWW-Authenticate": challenge}})
        self.reason = reason


def fetch_json(url: str) -> dict[str, Any]:
    """GET a JSON object (a JWKS or a discovery document); TransientError when it cannot."""
    import urllib.error
    import urllib.request  # only when keys are fetched: a cold /jobs in api_key mode never is

    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=FETCH_TIMEOUT_SECONDS) as answer:  # noqa: S310 - https/loopback only (settings)
            raw = answer.read(MAX_DOCUMENT_BYTES + 1)
    except (urllib.error.URLError, OSError) as exc:
        raise TransientError(f"fetching {url}: {type(exc).__name__}") from exc
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise TransientError(f"{url} answered more than {MAX_DOCUMENT_BYTES} bytes")
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise TransientError(f"{url} answered no JSON") from exc
    if not isinstance(document, dict):
        raise TransientError(f"{url} answered no JSON object")
    return document


class SigningKeys:
    """The issuer's RSA signing keys by `kid`: fetched on first use, again after `ttl_s`, and
    for an unknown `kid` at most every `min_refresh_s`. A failed fetch keeps the keys it had
    (the issuer may be briefly unreachable); with none at all it raises TransientError."""

    def __init__(
        self,
        locate: Callable[[], str],
        *,
        ttl_s: float,
        min_refresh_s: float = MIN_REFRESH_SECONDS,
        fetch: Callable[[str], dict[str, Any]] = fetch_json,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._locate = locate
        self._ttl = ttl_s
        self._min_refresh = min_refresh_s
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, RSAKey] = {}
        self._fetched_at: float | None = None
        self.fetches = 0

    def get(self, kid: str) -> RSAKey | None:
        with self._lock:
            now = self._clock()
            stale = self._fetched_at is None or now - self._fetched_at >= self._ttl
            unknown = kid not in self._keys and (
                self._fetched_at is None or now - self._fetched_at >= self._min_refresh
            )
            if stale or unknown:
                self._refresh(now)
            return self._keys.get(kid)

    def _refresh(self, now: float) -> None:
        from joserfc.jwk import RSAKey

        try:
            document = self._fetch(self._locate())
        except TransientError:
            if not self._keys:
                raise
            logger.warning("signing keys not refreshed; the cached ones stay in use")
            self._fetched_at = now
            return
        keys: dict[str, RSAKey] = {}
        for entry in document.get("keys") or []:
            if not isinstance(entry, dict) or entry.get("kty") != "RSA":
                continue
            kid = entry.get("kid")
            if not isinstance(kid, str) or entry.get("use", "sig") != "sig":
                continue
            if entry.get("alg", ALGORITHMS[0]) not in ALGORITHMS:
                continue
            try:
                keys[kid] = RSAKey.import_key(entry)
            except Exception:  # one unusable key must not hide the others
                logger.warning("a signing key could not be read", extra={"kid": kid[:64]})
        if not keys and not self._keys:
            raise TransientError("the issuer's JWKS holds no RSA signing key")
        self._keys = keys or self._keys
        self._fetched_at = now
        self.fetches += 1


def jwks_locator(
    settings: ApiSettings, fetch: Callable[[str], dict[str, Any]]
) -> Callable[[], str]:
    """Where the keys are: AUTH_JWKS_URL; a Cognito pool's ``<issuer>/.well-known/jwks.json``;
    else the issuer's discovery document's `jwks_uri` (its `issuer` must be ours)."""
    issuer = (settings.auth_issuer or "").rstrip("/")
    if settings.auth_jwks_url:
        url = settings.auth_jwks_url
        return lambda: url
    if settings.auth_mode == "cognito":
        return lambda: f"{issuer}/.well-known/jwks.json"
    found: list[str] = []

    def discover() -> str:
        if not found:
            document = fetch(f"{issuer}/.well-known/openid-configuration")
            if str(document.get("issuer", "")).rstrip("/") != issuer:
                raise TransientError("the discovery document names another issuer")
            uri = document.get("jwks_uri")
            if not isinstance(uri, str) or not uri.startswith("https://"):
                raise TransientError("the discovery document has no https jwks_uri")
            found.append(uri)
        return found[0]

    return discover


def _b64_json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


class TokenVerifier:
    """Checks bearer tokens (module docstring) against one issuer."""

    def __init__(
        self,
        *,
        issuer: str,
        audiences: list[str],
        keys: SigningKeys,
        token_use: Literal["access", "id"] | None = None,
        scope: str | None = None,
        cognito: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.audiences = frozenset(audiences)
        self.keys = keys
        self.token_use = token_use
        self.scope = scope
        self.cognito = cognito
        self._clock = clock

    @classmethod
    def from_settings(
        cls, settings: ApiSettings, *, fetch: Callable[[str], dict[str, Any]] = fetch_json
    ) -> TokenVerifier:
        assert settings.auth_issuer is not None
        keys = SigningKeys(
            jwks_locator(settings, fetch), ttl_s=settings.auth_jwks_cache_seconds, fetch=fetch
        )
        return cls(
            issuer=settings.auth_issuer,
            audiences=settings.auth_audience,
            keys=keys,
            token_use=settings.token_use,
            scope=settings.auth_scope,
            cognito=settings.auth_mode == "cognito",
        )

    def verify(self, token: str) -> Principal:
        """The signed-in user, or TokenRefused (TransientError when the keys are out of
        reach: that is the service's trouble, not the caller's)."""
        claims = self._verified_claims(token)
        now = self._clock()
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise TokenRefused("expired")
        if exp + LEEWAY_SECONDS < now:
            raise TokenRefused("expired")
        for claim in ("nbf", "iat"):
            moment = claims.get(claim)
            if isinstance(moment, int | float) and moment - LEEWAY_SECONDS > now:
                raise TokenRefused("not_yet_valid")
        if claims.get("iss") != self.issuer:
            raise TokenRefused("issuer")
        if not self._audience_ok(claims):
            raise TokenRefused("audience")
        if self.token_use is not None and claims.get("token_use") != self.token_use:
            raise TokenRefused("token_use")
        if self.scope is not None:
            scopes = claims.get("scope")
            if not isinstance(scopes, str) or self.scope not in scopes.split():
                raise TokenRefused("scope")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not 0 < len(subject) <= 255:
            raise TokenRefused("subject")
        name = claims.get("username") or claims.get("cognito:username")
        return Principal("user", subject, name if isinstance(name, str) else None)

    def _verified_claims(self, token: str) -> dict[str, Any]:
        from joserfc import jwt
        from joserfc.errors import BadSignatureError, JoseError

        if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            raise TokenRefused("malformed")
        try:
            header = _b64_json(token.split(".", 1)[0])
        except (ValueError, UnicodeError, binascii.Error):
            raise TokenRefused("malformed") from None
        if not isinstance(header, dict):
            raise TokenRefused("malformed")
        if header.get("alg") not in ALGORITHMS:
            raise TokenRefused("algorithm")
        kid = header.get("kid")
        if not isinstance(kid, str) or not 0 < len(kid) <= 256:
            raise TokenRefused("unknown_key")
        key = self.keys.get(kid)
        if key is None:
            raise TokenRefused("unknown_key")
        try:
            decoded = jwt.decode(token, key, algorithms=list(ALGORITHMS))
        except BadSignatureError:
            raise TokenRefused("signature") from None
        except (JoseError, ValueError, TypeError, UnicodeError, binascii.Error):
            raise TokenRefused("malformed") from None
        claims: dict[str, Any] = decoded.claims
        return claims

    def _audience_ok(self, claims: dict[str, Any]) -> bool:
        if self.cognito and claims.get("token_use") == "access":
            given: Any = claims.get("client_id")
        else:
            given = claims.get("aud")
        values = given if isinstance(given, list) else [given]
        return any(isinstance(v, str) and v in self.audiences for v in values)


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header (TokenRefused otherwise)."""
    if not authorization:
        raise TokenRefused("missing")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenRefused("malformed")
    return token.strip()


def log_refusal(exc: TokenRefused) -> None:
    logger.warning("bearer token refused", extra={"reason": exc.reason})
