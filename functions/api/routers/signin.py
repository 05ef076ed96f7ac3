"""`GET /auth/config`: how the page signs a user in (public: it holds no secret, except the
local stack's demo password, which exists only on 127.0.0.1)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from pydantic import Field

from functions.api.deps import SettingsDep
from functions.api.models import _ApiModel
from functions.api.settings import COGNITO_SCOPE, AuthMode

router = APIRouter(tags=["auth"])


class LocalSignIn(_ApiModel):
    """The local stack's demo users (`make serve ARGS="--auth cognito"`): signed in through
    moto's Cognito API with USER_PASSWORD_AUTH."""

    idp_url: str
    users: list[str]
    password: str | None = None


class SignInConfig(_ApiModel):
    mode: AuthMode = Field(..., description="api_key: send x-api-key; else a bearer token")
    #: the app client the page signs in with (the audience of the tokens)
    client_id: str | None = None
    #: Cognito's hosted sign-in (authorization code with PKCE), where deployed
    hosted_ui_url: str | None = None
    scopes: list[str] = Field(default_factory=list)
    token: Literal["access", "id"] | None = Field(
        None, description="which token to send as `Authorization: Bearer`"
    )
    local: LocalSignIn | None = None


@router.get("/auth/config", response_model=SignInConfig, summary="How to sign in (public)")
async def signin_config(settings: SettingsDep, response: Response) -> SignInConfig:
    """What the page needs to sign a user in; open without a key or token."""
    response.headers["Cache-Control"] = "no-store"
    if not settings.uses_tokens:
        return SignInConfig(mode=settings.auth_mode)
    local = None
    if settings.auth_local_idp_url:
        password = settings.auth_demo_password
        local = LocalSignIn(
            idp_url=settings.auth_local_idp_url,
            users=settings.auth_demo_users,
            password=password.get_secret_value() if password else None,
        )
    return SignInConfig(
        mode=settings.auth_mode,
        client_id=settings.auth_audience[0],
        hosted_ui_url=settings.auth_hosted_ui_url,
        scopes=["openid", COGNITO_SCOPE] if settings.auth_mode == "cognito" else ["openid"],
        token=settings.token_use or ("id" if settings.auth_mode == "oidc" else "access"),
        local=local,
    )
