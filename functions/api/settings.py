"""The HTTP API's own settings (access, CORS, limits), read from the environment once.

Resource names (bucket, table) come from `alertfusion.settings.PipelineSettings`, the
model bundle from `EngineSettings`: the routes that need them load those lazily, so a
process that only serves `/healthz` needs neither.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from alertfusion import limits
from alertfusion.keys import UPLOAD_PREFIX
from alertfusion.limits import MAX_TEXT_CHARS
from alertfusion.settings import load_settings

#: API Gateway accepts 10 MB per request, a synchronous Lambda invocation at most 6 MB
#: (6 291 456 bytes) of event JSON, and binary bodies reach Lambda base64-encoded (x4/3).
#: 4 MiB of raw body is 5 592 408 bytes of base64, which leaves 699 048 bytes for the rest
#: of the event (headers twice over as `headers` and `multiValueHeaders`, the request
#: context): API Gateway caps request headers at 10 KB, so that margin is ample. The stacks
#: set MAX_BODY_BYTES to this value, on Lambda and on the EC2 fallback alike.
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
#: S3 allows presigned POST policies of any length; clients should upload promptly
MAX_UPLOAD_URL_SECONDS = 15 * 60
#: the app uploads right after `POST /uploads`; a POST whose upload did not start in this
#: time is gone, and a replayed Idempotency-Key gets a fresh one while the job waits
DEFAULT_UPLOAD_URL_SECONDS = 120
#: a request body must have arrived this long after the request started (uvicorn: EC2,
#: local; behind API Gateway the body comes whole with the event): 4 MiB at 1 Mbit/s
DEFAULT_BODY_TIMEOUT_SECONDS = 60.0
#: ...and no part of it may be this long in coming
DEFAULT_BODY_IDLE_SECONDS = 10.0


#: who the end-user routes (`/uploads`, `/jobs`, `/predict`, `/predict_s3`) accept: the API
#: key (the original clients and servers), or a signed-in user's bearer token from a Cognito
#: user pool or another OpenID Connect issuer (functions.api.auth)
AuthMode = Literal["api_key", "cognito", "oidc"]
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: the scope every Cognito access token carries (sign-in through the SDK or the hosted UI):
#: the gateway's Cognito authorizer asks for it, which makes it take access tokens
COGNITO_SCOPE = "aws.cognito.signin.user.admin"


def _https_or_loopback(name: str, url: str, *, loopback_http: bool) -> None:
    parts = urlsplit(url)
    local = parts.scheme == "http" and parts.hostname in _LOOPBACK
    if not parts.hostname or not (parts.scheme == "https" or (loopback_http and local)):
        allowed = "https (or http on 127.0.0.1 for the local stack)" if loopback_http else "https"
        raise ValueError(f"{name} must be an {allowed} URL, not {url!r}")


def _csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class ApiSettings(BaseSettings):
    """What the API adds to the pipeline's and the engine's settings."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, case_sensitive=False)

    #: the client key; unset: the app checks nothing (API Gateway checks it in front)
    api_key: SecretStr | None = Field(None, validation_alias="API_KEY")
    #: false: never check, even with API_KEY set (behind API Gateway's own key check)
    api_key_required: bool = Field(True, validation_alias="API_KEY_REQUIRED")
    #: browser origins allowed to call the API (comma-separated; "*" for any); empty: no CORS
    cors_allow_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="CORS_ALLOW_ORIGINS"
    )
    #: largest request body, multipart overhead included (see DEFAULT_MAX_BODY_BYTES)
    max_body_bytes: int = Field(
        DEFAULT_MAX_BODY_BYTES, gt=0, le=1024**3, validation_alias="MAX_BODY_BYTES"
    )
    #: longest accepted text (characters); the engine reads the same variable
    max_text_chars: int = Field(MAX_TEXT_CHARS, gt=0, validation_alias="MAX_TEXT_CHARS")
    #: key prefixes `/predict_s3` may read in the pipeline's bucket (comma-separated)
    predict_s3_prefixes: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [UPLOAD_PREFIX], validation_alias="PREDICT_S3_PREFIXES"
    )
    #: lifetime of the presigned POST that `POST /uploads` answers
    upload_url_expires_seconds: int = Field(
        DEFAULT_UPLOAD_URL_SECONDS,
        ge=30,
        le=MAX_UPLOAD_URL_SECONDS,
        validation_alias="UPLOAD_URL_EXPIRES_SECONDS",
    )
    #: the URL clients reach this API at (``https://host[:port][/prefix]``): the base of
    #: `poll_url` and `Location` under uvicorn (EC2, local). Unset, those are paths (the
    #: client's Host header is never written into a URL); behind API Gateway, the gateway's
    #: own host is used.
    public_base_url: str | None = Field(None, validation_alias="PUBLIC_BASE_URL")
    #: a request body must arrive within this, each part within the idle limit (408)
    body_timeout_seconds: float = Field(
        DEFAULT_BODY_TIMEOUT_SECONDS, gt=0, le=3600, validation_alias="BODY_TIMEOUT_SECONDS"
    )
    body_idle_seconds: float = Field(
        DEFAULT_BODY_IDLE_SECONDS, gt=0, le=3600, validation_alias="BODY_IDLE_SECONDS"
    )

    #: how long Transcribe usually takes for a short recording (Retry-After of /jobs; see
    #: functions.api.polling). Locally, where a stand-in answers at once, set it low.
    transcribe_expected_seconds: float = Field(
        15.0, ge=0, le=600, validation_alias="TRANSCRIBE_EXPECTED_SECONDS"
    )

    # ---- end-user identity (functions.api.auth) ----
    auth_mode: AuthMode = Field("api_key", validation_alias="AUTH_MODE")
    #: the token issuer (`iss`): https://cognito-idp.<region>.amazonaws.com/<pool id>, or the
    #: OpenID Connect issuer's URL
    auth_issuer: str | None = Field(None, validation_alias="AUTH_ISSUER")
    #: accepted audiences (comma-separated): the app client ids (Cognito access tokens carry
    #: it as `client_id`, ID tokens and other issuers' tokens as `aud`)
    auth_audience: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="AUTH_AUDIENCE"
    )
    #: the `token_use` claim tokens must have (Cognito: `access` unless set); unset for oidc
    auth_token_use: Literal["access", "id"] | None = Field(None, validation_alias="AUTH_TOKEN_USE")
    #: a scope tokens must carry in `scope` (what the gateway's authorizer demands too)
    auth_scope: str | None = Field(None, validation_alias="AUTH_SCOPE")
    #: where the signing keys are (default: the issuer's; the local stack points at moto)
    auth_jwks_url: str | None = Field(None, validation_alias="AUTH_JWKS_URL")
    #: how long fetched signing keys are used before they are fetched again
    auth_jwks_cache_seconds: int = Field(
        3600, ge=60, le=86_400, validation_alias="AUTH_JWKS_CACHE_SECONDS"
    )
    #: the page's sign-in where deployed: the Cognito domain's base URL (hosted sign-in)
    auth_hosted_ui_url: str | None = Field(None, validation_alias="AUTH_HOSTED_UI_URL")
    #: the local stack only: the Cognito API (moto) the page signs demo users in at
    auth_local_idp_url: str | None = Field(None, validation_alias="AUTH_LOCAL_IDP_URL")
    auth_demo_users: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="AUTH_DEMO_USERS"
    )
    auth_demo_password: SecretStr | None = Field(None, validation_alias="AUTH_DEMO_PASSWORD")

    # ---- per-user quotas (functions.api.quotas): signed-in users; keys have the usage plan
    quota_uploads_per_hour: int = Field(
        limits.QUOTA_UPLOADS_PER_HOUR, ge=1, validation_alias="QUOTA_UPLOADS_PER_HOUR"
    )
    quota_uploads_per_day: int = Field(
        limits.QUOTA_UPLOADS_PER_DAY, ge=1, validation_alias="QUOTA_UPLOADS_PER_DAY"
    )
    quota_predictions_per_hour: int = Field(
        limits.QUOTA_PREDICTIONS_PER_HOUR, ge=1, validation_alias="QUOTA_PREDICTIONS_PER_HOUR"
    )
    quota_predictions_per_day: int = Field(
        limits.QUOTA_PREDICTIONS_PER_DAY, ge=1, validation_alias="QUOTA_PREDICTIONS_PER_DAY"
    )

    @field_validator(
        "cors_allow_origins",
        "predict_s3_prefixes",
        "auth_audience",
        "auth_demo_users",
        mode="before",
    )
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _csv(value)

    @field_validator("cors_allow_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port])")
        return [origin.rstrip("/") for origin in value]

    @field_validator("public_base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("http://", "https://")) or any(c in value for c in "?#\\ "):
            raise ValueError(f"{value!r} is not a base URL (scheme://host[:port][/prefix])")
        return value.rstrip("/")

    @field_validator("predict_s3_prefixes")
    @classmethod
    def _prefixes(cls, value: list[str]) -> list[str]:
        for prefix in value:
            if prefix.startswith("/") or ".." in prefix or not prefix.endswith("/"):
                raise ValueError(f"{prefix!r}: prefixes are relative folders ending in '/'")
        return value

    @model_validator(mode="after")
    def _key(self) -> ApiSettings:
        if self.api_key is not None and len(self.api_key.get_secret_value()) < 16:
            raise ValueError("API_KEY must have at least 16 characters")
        return self

    @model_validator(mode="after")
    def _auth(self) -> ApiSettings:
        token_settings = {
            "AUTH_ISSUER": self.auth_issuer,
            "AUTH_AUDIENCE": self.auth_audience,
            "AUTH_JWKS_URL": self.auth_jwks_url,
            "AUTH_HOSTED_UI_URL": self.auth_hosted_ui_url,
            "AUTH_LOCAL_IDP_URL": self.auth_local_idp_url,
        }
        if self.auth_mode == "api_key":
            given = [name for name, value in token_settings.items() if value]
            if given:
                raise ValueError(f"{', '.join(given)} set, but AUTH_MODE is api_key")
            return self
        if not self.auth_issuer or not self.auth_audience:
            raise ValueError(f"AUTH_MODE={self.auth_mode} needs AUTH_ISSUER and AUTH_AUDIENCE")
        _https_or_loopback("AUTH_ISSUER", self.auth_issuer, loopback_http=False)
        if self.auth_jwks_url:
            _https_or_loopback("AUTH_JWKS_URL", self.auth_jwks_url, loopback_http=True)
        if self.auth_hosted_ui_url:
            _https_or_loopback("AUTH_HOSTED_UI_URL", self.auth_hosted_ui_url, loopback_http=True)
        if self.auth_local_idp_url:
            _https_or_loopback("AUTH_LOCAL_IDP_URL", self.auth_local_idp_url, loopback_http=True)
            if urlsplit(self.auth_local_idp_url).scheme != "http":
                raise ValueError("AUTH_LOCAL_IDP_URL is the local stack's moto (http://127.0.0.1)")
        elif self.auth_demo_users or self.auth_demo_password:
            raise ValueError("AUTH_DEMO_USERS and AUTH_DEMO_PASSWORD need AUTH_LOCAL_IDP_URL")
        return self

    @model_validator(mode="after")
    def _quotas(self) -> ApiSettings:
        for kind in ("uploads", "predictions"):
            if getattr(self, f"quota_{kind}_per_hour") > getattr(self, f"quota_{kind}_per_day"):
                raise ValueError(
                    f"QUOTA_{kind.upper()}_PER_HOUR is above QUOTA_{kind.upper()}_PER_DAY"
                )
        return self

    @property
    def checks_api_key(self) -> bool:
        """Whether the app itself checks `x-api-key` (standalone: EC2, local)."""
        return self.api_key_required and self.api_key is not None

    @property
    def uses_tokens(self) -> bool:
        """Whether the end-user routes want a signed-in user's bearer token."""
        return self.auth_mode != "api_key"

    @property
    def token_use(self) -> Literal["access", "id"] | None:
        """The `token_use` tokens must carry: Cognito's are typed, access by default."""
        if self.auth_token_use is None and self.auth_mode == "cognito":
            return "access"
        return self.auth_token_use


@lru_cache(maxsize=1)
def api_settings() -> ApiSettings:
    return load_settings(ApiSettings)
