"""The local stack's Cognito user pool (moto) and its demo users: real signed tokens.

moto's Cognito user pools issue RS256 access and ID tokens whose `iss` is the pool's AWS
issuer URL, and serve the matching JWKS at ``<moto>/<pool id>/.well-known/jwks.json``; the
API checks local tokens exactly as deployed ones, only fetching the keys from moto
(AUTH_JWKS_URL). moto signs every pool's tokens with one private key that ships inside moto
(kid ``dummy``): anyone can forge a token for it, which is why AUTH_JWKS_URL may only point
at 127.0.0.1 and nothing deployed ever trusts it.

``make serve ARGS="--auth cognito"`` writes where its pool is to ``build/local/serve-<port>.json``
(:class:`ServeState`); ``make token USER=alice`` (devstack.token) reads it, creates the user
on first use and signs them in.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from functions.api.settings import COGNITO_SCOPE

#: created with the pool; any other name gets an account on first `make token USER=...`
DEMO_USERS = ("alice", "bob")
#: every local demo account's password (the local stack only: moto on 127.0.0.1)
DEMO_PASSWORD = "Alertfusion-local-1"
POOL_NAME = "alertfusion-local-users"
CLIENT_NAME = "alertfusion-local-page"
STATE_DIR = Path(__file__).resolve().parents[1] / "build" / "local"


@dataclass(frozen=True)
class LocalPool:
    """A user pool in moto and the app client the page and `make token` sign in with."""

    endpoint_url: str
    region: str
    pool_id: str
    client_id: str

    @property
    def issuer(self) -> str:
        """What moto writes into `iss`: the pool's AWS issuer URL."""
        return f"https://cognito-idp.{self.region}.amazonaws.com/{self.pool_id}"

    @property
    def jwks_url(self) -> str:
        return f"{self.endpoint_url}/{self.pool_id}/.well-known/jwks.json"

    def api_env(self) -> dict[str, str]:
        """The API's settings for this pool (functions.api.settings: AUTH_*)."""
        return {
            "AUTH_MODE": "cognito",
            "AUTH_ISSUER": self.issuer,
            "AUTH_AUDIENCE": self.client_id,
            "AUTH_SCOPE": COGNITO_SCOPE,
            "AUTH_JWKS_URL": self.jwks_url,
            "AUTH_LOCAL_IDP_URL": self.endpoint_url,
            "AUTH_DEMO_USERS": ",".join(DEMO_USERS),
            "AUTH_DEMO_PASSWORD": DEMO_PASSWORD,
        }


def create_pool(client: Any, *, endpoint_url: str, region: str) -> LocalPool:
    """The pool (Cognito's password rules), a public app client that signs in with a
    password (USER_PASSWORD_AUTH; the hosted sign-in moto lacks), and the demo users."""
    pool_id = client.create_user_pool(
        PoolName=POOL_NAME,
        Policies={
            "PasswordPolicy": {
                "MinimumLength": 12,
                "RequireUppercase": True,
                "RequireLowercase": True,
                "RequireNumbers": True,
                "RequireSymbols": True,
            }
        },
    )["UserPool"]["Id"]
    client_id = client.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName=CLIENT_NAME,
        GenerateSecret=False,
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    pool = LocalPool(endpoint_url, region, pool_id, client_id)
    for name in DEMO_USERS:
        ensure_user(client, pool, name)
    return pool


def ensure_user(client: Any, pool: LocalPool, username: str) -> bool:
    """The account `username` with the demo password; True when it was made now."""
    try:
        client.admin_get_user(UserPoolId=pool.pool_id, Username=username)
        return False
    except client.exceptions.UserNotFoundException:
        pass
    client.admin_create_user(UserPoolId=pool.pool_id, Username=username, MessageAction="SUPPRESS")
    client.admin_set_user_password(
        UserPoolId=pool.pool_id, Username=username, Password=DEMO_PASSWORD, Permanent=True
    )
    return True


def sign_in(pool: LocalPool, username: str, password: str = DEMO_PASSWORD) -> dict[str, Any]:
    """Cognito's InitiateAuth (USER_PASSWORD_AUTH), unsigned as an app calls it: the
    AuthenticationResult (AccessToken, IdToken, RefreshToken, ExpiresIn)."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    idp = boto3.session.Session().client(
        "cognito-idp",
        region_name=pool.region,
        endpoint_url=pool.endpoint_url,
        config=Config(signature_version=UNSIGNED),
    )
    answer = idp.initiate_auth(
        ClientId=pool.client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": username, "PASSWORD": password},
    )
    result: dict[str, Any] = answer["AuthenticationResult"]
    return result


@dataclass(frozen=True)
class ServeState:
    """What `make serve --auth cognito` tells `make token` (one file per port)."""

    port: int
    pid: int
    pool: LocalPool

    @staticmethod
    def path(port: int, directory: Path = STATE_DIR) -> Path:
        return directory / f"serve-{port}.json"

    def write(self, directory: Path = STATE_DIR) -> Path:
        path = self.path(self.port, directory)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def read(cls, port: int, directory: Path = STATE_DIR) -> ServeState | None:
        """The state `make serve` left for `port`, None without a live one (no file, or its
        process is gone)."""
        path = cls.path(port, directory)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            state = cls(
                port=int(data["port"]), pid=int(data["pid"]), pool=LocalPool(**data["pool"])
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        try:
            os.kill(state.pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, another user's
        return state
