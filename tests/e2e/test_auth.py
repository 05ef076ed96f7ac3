"""Signed-in users through the local stack: moto's Cognito user pool issues the tokens, the
API under uvicorn checks them against moto's JWKS, quotas hold under 20 parallel requests
(moto's DynamoDB applies each item write atomically, as DynamoDB does), `make token`
prints a usable token, and `make demo --auth cognito` runs the whole flow."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from devstack.api_server import ApiServer
from devstack.cognito import DEMO_USERS, ServeState, sign_in
from devstack.stack import LocalStack
from functions.api.quotas import QuotaStore
from tests.conftest import REPO
from tests.e2e.conftest import sample

pytestmark = pytest.mark.e2e

PARALLEL = 20


@pytest.fixture
def users(
    make_stack: Callable[..., LocalStack],
) -> Iterator[Callable[..., tuple[str, LocalStack]]]:
    """A local stack with a user pool and the API before it: (the API's URL, the stack)."""
    servers: list[ApiServer] = []

    def start(**env: str) -> tuple[str, LocalStack]:
        stack = make_stack(auth="cognito", env=env)
        server = ApiServer().__enter__()
        servers.append(server)
        return server.url, stack

    try:
        yield start
    finally:
        for server in servers:
            server.__exit__(None, None, None)


def bearer(stack: LocalStack, user: str) -> dict[str, str]:
    assert stack.cognito is not None
    return {"Authorization": f"Bearer {sign_in(stack.cognito, user)['AccessToken']}"}


def in_parallel(call: Callable[[int], int]) -> list[int]:
    """`call(i)` for 20 indexes, every one in flight at once; the statuses."""
    barrier = threading.Barrier(PARALLEL)

    def run(i: int) -> int:
        barrier.wait(timeout=30)
        return call(i)

    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        return list(pool.map(run, range(PARALLEL)))


def test_moto_tokens_pass_and_a_tampered_one_does_not(
    users: Callable[..., tuple[str, LocalStack]],
) -> None:
    url, stack = users()
    alice = bearer(stack, "alice")
    created = httpx.post(f"{url}/uploads", json={"content_type": "audio/wav"}, headers=alice)
    assert created.status_code == 201, created.text
    job_id = created.json()["job_id"]
    owner = stack.job(job_id).owner
    assert owner is not None and owner.startswith("user:")
    token = alice["Authorization"].removeprefix("Bearer ")
    head, body, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    forged = {"Authorization": f"Bearer {head}.{body}.{flipped}"}
    assert httpx.get(f"{url}/jobs/{job_id}", headers=forged).status_code == 401
    assert httpx.get(f"{url}/jobs/{job_id}", headers=bearer(stack, "bob")).status_code == 404
    assert httpx.get(f"{url}/jobs/{job_id}", headers=alice).status_code == 200


@pytest.mark.usefixtures("clear_of_the_hour")
def test_twenty_parallel_uploads_never_pass_the_quota(
    users: Callable[..., tuple[str, LocalStack]],
) -> None:
    url, stack = users(QUOTA_UPLOADS_PER_HOUR="5", QUOTA_UPLOADS_PER_DAY="7")
    alice, bob = bearer(stack, "alice"), bearer(stack, "bob")

    def create(i: int) -> int:
        return httpx.post(
            f"{url}/uploads", json={"content_type": "audio/wav"}, headers=alice, timeout=60
        ).status_code

    statuses = in_parallel(create)
    assert sorted(statuses) == [201] * 5 + [429] * (PARALLEL - 5)
    jobs = [j for j in stack.all_jobs() if j.get("owner", {}).get("S", "").startswith("user:")]
    assert len(jobs) == 5
    # the counters hold exactly the admitted requests; bob's quota is his own
    store = QuotaStore(stack.config.table, stack.client("dynamodb"))
    owner = jobs[0]["owner"]["S"]
    assert store.used(owner, "uploads", datetime.now(UTC)) == (5, 5)
    assert (
        in_parallel(
            lambda i: (
                httpx.post(
                    f"{url}/uploads", json={"content_type": "audio/wav"}, headers=bob, timeout=60
                ).status_code
            )
        ).count(201)
        == 5
    )
    assert store.used(owner, "uploads", datetime.now(UTC)) == (5, 5)  # bob's count apart


@pytest.mark.usefixtures("clear_of_the_hour")
def test_twenty_parallel_predictions_never_pass_the_quota(
    users: Callable[..., tuple[str, LocalStack]],
) -> None:
    url, stack = users(QUOTA_PREDICTIONS_PER_HOUR="4", QUOTA_PREDICTIONS_PER_DAY="4")
    alice = bearer(stack, "alice")
    audio = sample("ko-help-16k.wav")

    def predict(i: int) -> int:
        return httpx.post(
            f"{url}/predict",
            files={"audio_file": ("help.wav", audio, "audio/wav")},
            headers=alice,
            timeout=120,
        ).status_code

    statuses = in_parallel(predict)
    assert sorted(statuses) == [200] * 4 + [429] * (PARALLEL - 4)


def test_make_token_prints_a_token_of_the_running_stack(
    users: Callable[..., tuple[str, LocalStack]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from devstack.token import main

    url, stack = users()
    port = int(url.rsplit(":", 1)[-1])
    assert main(["dave", "--port", str(port)], state_dir=tmp_path) == 2  # nothing serves yet
    assert "make serve" in capsys.readouterr().err
    assert stack.cognito is not None
    ServeState(port=port, pid=os.getpid(), pool=stack.cognito).write(tmp_path)

    assert main(["dave", "--port", str(port)], state_dir=tmp_path) == 0
    out = capsys.readouterr()
    token = out.out.strip().splitlines()[-1]
    assert "created and signed in dave" in out.err
    created = httpx.post(
        f"{url}/uploads",
        json={"content_type": "audio/wav"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert created.status_code == 201, created.text
    # the second time the user exists already: same subject
    assert main(["dave", "--port", str(port)], state_dir=tmp_path) == 0
    again = capsys.readouterr()
    assert "created" not in again.err
    other = again.out.strip().splitlines()[-1]
    job = httpx.get(
        f"{url}/jobs/{created.json()['job_id']}", headers={"Authorization": f"Bearer {other}"}
    )
    assert job.status_code == 200
    assert sorted(DEMO_USERS) == ["alice", "bob"]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
@pytest.mark.parametrize(
    ("arguments", "user"), [([], "alice"), (["USER=bob"], "bob")], ids=["default", "USER=bob"]
)
def test_make_token_takes_the_user_from_its_command_line_not_the_login_name(
    arguments: list[str], user: str
) -> None:
    """`make token` is alice's token even though the environment's USER is the login name;
    `make token USER=bob` is bob's. A dry run (-n): nothing is executed."""
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", "-o", ".venv/.installed", "token", *arguments],
        cwd=REPO,
        env={**os.environ, "USER": "someone-logged-in"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    command = done.stdout.strip().splitlines()[-1].split()
    assert command[-4:] == ["devstack.token", "--port", "${PORT:-8000}", user]


def test_demo_runs_as_a_signed_in_user_and_deletes_the_job(tiny_bundle: Path) -> None:
    """What `make demo ARGS="--auth cognito"` runs (devstack.demo), on the tiny bundle."""
    from devstack.demo import Console, parse_args, run

    args = parse_args(["--auth", "cognito", "--bundle", str(tiny_bundle)])
    printed = io.StringIO()
    code = run(args, Console(printed))
    text = printed.getvalue()
    assert code == 0, text
    assert "signed in as alice" in text and "bob asks for it: 404 JOB_NOT_FOUND" in text
    assert "alice deletes it: DELETED" in text
    assert "objects left none, Transcribe jobs left none" in text
