"""Signing in on the page, in headless Chromium: the local stack's demo users (moto's
Cognito user pool, real signed tokens), the hosted sign-in's authorization code flow with
PKCE (against a stand-in for Cognito's hosted pages on 127.0.0.1), the asynchronous flow as
a signed-in user ending with the deletion of the recording, and the quota message."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from functions.api.app import create_app
from functions.api.settings import ApiSettings
from tests.browser.conftest import open_page
from tests.conftest import SAMPLES
from tests.integration.api.conftest import with_engine
from tests.integration.api.live_server import LiveServer
from tests.tokens import ALICE, ISSUER, Issuer, jwks_server, token_settings

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

SIGNED_IN = "() => document.querySelector('#signin-status').textContent.includes('signed in as')"


@pytest.fixture
def stack(tiny_bundle: Path) -> Iterator[Any]:
    from devstack.config import LocalConfig
    from devstack.stack import LocalStack

    config = LocalConfig(bundle=str(tiny_bundle), auth="cognito")
    with LocalStack(config) as local:
        yield local


def local_app(stack: Any, engine: Any, **env: str) -> Any:
    settings = ApiSettings.model_validate(
        {**stack.cognito.api_env(), "TRANSCRIBE_EXPECTED_SECONDS": "0", **env}
    )
    return with_engine(create_app(settings), engine)


def test_a_demo_user_signs_in_uploads_and_deletes_the_recording(
    browser: Any, stack: Any, engine: Any
) -> None:
    with LiveServer(local_app(stack, engine)) as live:
        page = open_page(browser, live.url)
        assert page.locator("#key-section").is_hidden()
        assert "not signed in" in page.inner_text("[data-testid='signin-status']")
        # not signed in: the API refuses, and the page says to sign in
        page.set_input_files("#predict-file", str(SAMPLES / "ko-regular-22k.wav"))
        page.click("#predict-form button")
        error = page.wait_for_selector("[data-testid='error']").inner_text()
        assert "UNAUTHORIZED" in error and "sign in again" in error

        page.select_option("#signin-user", "alice")
        page.click("#local-signin-form button")  # the demo password is filled in
        page.wait_for_function(SIGNED_IN)
        assert "alice" in page.inner_text("[data-testid='signin-status']")
        token = page.evaluate("sessionStorage.getItem('alertfusion.token')")
        assert token and token.count(".") == 2
        assert page.evaluate("localStorage.length") == 0

        page.set_input_files("#async-file", str(SAMPLES / "ko-help-16k.wav"))
        page.click("#async-form button")
        page.wait_for_selector("#delete-job:not([hidden])", timeout=120_000)
        status = page.inner_text("[data-testid='job-status']")
        job_id = status.split("job ")[-1].strip(")")
        assert "DONE" in status and stack.job(job_id).owner.startswith("user:")
        listed = stack.client("s3").list_objects_v2(Bucket=stack.config.bucket)["Contents"]
        assert any(job_id in o["Key"] for o in listed)

        page.click("#delete-job")
        deleted = page.wait_for_selector("[data-testid='deleted']").inner_text()
        assert "deleted at" in deleted
        assert "DELETED" in page.inner_text("[data-testid='job-status']")
        listed = stack.client("s3").list_objects_v2(Bucket=stack.config.bucket).get("Contents", [])
        assert not any(job_id in o["Key"] for o in listed)
        assert stack.job(job_id).status.value == "DELETED"

        page.click("#signout")
        assert "not signed in" in page.inner_text("[data-testid='signin-status']")
        assert page.evaluate("sessionStorage.getItem('alertfusion.token')") is None
        # the one failed request is the 401 the test provoked before signing in
        assert page.problems == [
            "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
        ]


@pytest.mark.usefixtures("clear_of_the_hour")
def test_the_quota_message_says_when_to_try_again(browser: Any, stack: Any, engine: Any) -> None:
    app = local_app(stack, engine, QUOTA_PREDICTIONS_PER_HOUR="1")
    with LiveServer(app) as live:
        page = open_page(browser, live.url)
        page.click("#local-signin-form button")
        page.wait_for_function(SIGNED_IN)
        page.set_input_files("#predict-file", str(SAMPLES / "ko-regular-22k.wav"))
        page.click("#predict-form button")
        page.wait_for_selector("[data-testid='verdict']")
        page.click("#predict-form button")
        quota = page.wait_for_selector("[data-testid='quota']").inner_text()
        assert "quota reached" in quota and "try again in" in quota
        assert "QUOTA_EXCEEDED" in page.inner_text("[data-testid='error']")


@dataclass
class HostedSignIn:
    """A stand-in for Cognito's hosted pages: /oauth2/authorize answers the redirect with a
    code, /oauth2/token trades it for tokens only with the PKCE verifier of the challenge."""

    issuer: Issuer
    authorized: list[dict[str, str]] = field(default_factory=list)
    traded: list[dict[str, str]] = field(default_factory=list)
    url: str = ""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        hosted = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if parts.path == "/oauth2/authorize":
                    hosted.authorized.append(query)
                    target = f"{query['redirect_uri']}?" + urlencode(
                        {"code": "the-code", "state": query["state"]}
                    )
                elif parts.path == "/logout":
                    target = query["logout_uri"]
                else:
                    self.send_error(404)
                    return
                self.send_response(302)
                self.send_header("Location", target)
                self.end_headers()

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                hosted.traded.append(form)
                asked = hosted.authorized[-1] if hosted.authorized else {}
                digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
                challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
                good = (
                    self.path == "/oauth2/token"
                    and form.get("code") == "the-code"
                    and challenge == asked.get("code_challenge")
                    and form.get("redirect_uri") == asked.get("redirect_uri")
                )
                token = hosted.issuer.token(ALICE)
                body = json.dumps(
                    {"access_token": token, "id_token": token, "expires_in": 3600}
                    if good
                    else {"error": "invalid_grant"}
                ).encode()
                self.send_response(200 if good else 400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        return Handler


@pytest.fixture
def hosted() -> Iterator[HostedSignIn]:
    stand_in = HostedSignIn(Issuer())
    server = ThreadingHTTPServer(("127.0.0.1", 0), stand_in.handler())
    thread = threading.Thread(target=server.serve_forever, name="hosted-sign-in", daemon=True)
    thread.start()
    stand_in.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield stand_in
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_the_hosted_sign_in_uses_the_code_flow_with_pkce(
    browser: Any, hosted: HostedSignIn, engine: Any, stack: Any
) -> None:
    """(The local stack only provides the jobs table the quotas count in.)"""
    with jwks_server(hosted.issuer) as jwks_url:
        fields = token_settings(jwks_url, auth_hosted_ui_url=hosted.url)
        # not the local stack's demo sign-in (its variables are in the environment)
        no_local = {"AUTH_LOCAL_IDP_URL": None, "AUTH_DEMO_USERS": "", "AUTH_DEMO_PASSWORD": None}
        settings = ApiSettings.model_validate(
            {**no_local, **{k.upper(): v for k, v in fields.items()}}
        )
        with LiveServer(with_engine(create_app(settings), engine)) as live:
            page = open_page(browser, live.url)
            assert page.locator("#local-signin-form").is_hidden()
            page.click("#hosted-signin")
            page.wait_for_function(SIGNED_IN)
            assert "alice" in page.inner_text("[data-testid='signin-status']")
            assert "code=" not in page.url and page.url == f"{live.url}/upload"
            (asked,) = hosted.authorized
            assert asked["code_challenge_method"] == "S256"
            assert asked["redirect_uri"] == f"{live.url}/upload"
            assert asked["client_id"] == fields["auth_audience"]
            assert set(asked["scope"].split()) == {"openid", "aws.cognito.signin.user.admin"}
            assert hosted.traded[0]["grant_type"] == "authorization_code"
            # the token works against the API
            page.set_input_files("#predict-file", str(SAMPLES / "ko-regular-22k.wav"))
            page.click("#predict-form button")
            page.wait_for_selector("[data-testid='verdict']")
            assert page.evaluate("sessionStorage.getItem('alertfusion.pkce')") is None
            page.click("#signout")  # through the hosted logout, back to the page
            page.wait_for_selector("html[data-ready='true']", state="attached")
            page.wait_for_function(
                "() => document.querySelector('#signin-status').textContent.includes('not signed')"
            )
            assert page.problems == []
    assert ISSUER.startswith("https://")
