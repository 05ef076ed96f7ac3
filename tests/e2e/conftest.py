"""The e2e tier: the whole asynchronous flow in this process through the local stack
(devstack: moto server on 127.0.0.1, real S3 → SQS and EventBridge → SQS
delivery, the real handlers, the Transcribe stand-in) with the real engine on the tiny bundle.
"""

from __future__ import annotations

import gc
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# The handlers import Powertools' Logger, which binds to sys.stdout when created: created
# here, at collection, it writes to pytest's session capture, not to one test's capsys.
import functions.classifier.app
import functions.starter.app
import functions.sweeper.app  # noqa: F401
from devstack.config import LocalConfig
from devstack.stack import LocalStack
from tests.conftest import FIXTURES, SAMPLES

#: how long a stopped stack's last request threads may take to end
THREAD_GRACE_SECONDS = 10.0

TRANSCRIPTS: dict[str, str] = json.loads((SAMPLES / "transcripts.json").read_text("utf-8"))


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def fixture_audio(name: str) -> bytes:
    return (FIXTURES / "audio" / name).read_bytes()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def make_stack(tiny_bundle: Path) -> Iterator[Callable[..., LocalStack]]:
    """Start a local stack with the real engine on the tiny bundle; stopped after the test,
    which must leave no thread, server, environment or moto setting change behind."""
    import copy

    from moto.core.config import default_user_config

    threads_before = set(threading.enumerate())
    moto_config_before = copy.deepcopy(default_user_config)
    stacks: list[LocalStack] = []

    def make(**overrides: Any) -> LocalStack:
        overrides.setdefault("bundle", str(tiny_bundle))
        stack = LocalStack(LocalConfig(**overrides))
        stack.__enter__()
        stacks.append(stack)
        return stack

    try:
        yield make
    finally:
        for stack in stacks:
            stack.stop()
    # A request thread of the stopped server may still be ending: it ends when its client's
    # keep-alive connection closes (the dropped boto3 clients close theirs when collected).
    # Give those a bounded grace; a thread still alive after it is a leak.
    gc.collect()
    deadline = time.monotonic() + THREAD_GRACE_SECONDS
    for thread in set(threading.enumerate()) - threads_before:
        thread.join(max(0.0, deadline - time.monotonic()))
    left = [t.name for t in set(threading.enumerate()) - threads_before if t.is_alive()]
    assert not left, f"threads left behind: {left}"
    # moto's configuration is process-wide: later in-process mock_aws users must get theirs
    assert default_user_config == moto_config_before
