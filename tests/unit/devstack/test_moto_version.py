"""The local stack hooks into moto's internals: it runs only on the moto it was written for."""

from __future__ import annotations

import importlib.metadata
import os
import re

import pytest

from devstack import moto_hooks
from devstack.moto_hooks import MOTO_VERSION, MotoVersionError, check_moto_version
from devstack.stack import LocalStack
from tests.conftest import REPO

pytestmark = pytest.mark.unit


def test_the_hooks_are_written_for_the_pinned_moto() -> None:
    pins = re.findall(
        r"^moto(?:\[[^\]]*\])?==(\S+)$",
        (REPO / "requirements-dev.txt").read_text(encoding="utf-8"),
        re.M,
    )
    assert pins == [MOTO_VERSION]
    assert importlib.metadata.version("moto") == MOTO_VERSION
    check_moto_version()


def test_another_moto_is_refused_naming_both_versions_and_what_to_do() -> None:
    with pytest.raises(MotoVersionError) as refused:
        check_moto_version("5.3.0")
    message = str(refused.value)
    assert f"moto {MOTO_VERSION}" in message and "moto 5.3.0 is installed" in message
    assert "devstack/moto_hooks.py" in message and f"moto[server]=={MOTO_VERSION}" in message
    assert refused.value.reason == "moto_version"


def test_the_stack_refuses_to_start_on_another_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(moto_hooks.importlib.metadata, "version", lambda name: "4.2.14")
    before = dict(os.environ)
    stack = LocalStack()
    with pytest.raises(MotoVersionError, match="moto 4.2.14 is installed"):
        stack.__enter__()
    assert stack.endpoint_url == "" and dict(os.environ) == before
