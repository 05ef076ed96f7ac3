"""SnapStart start-up hooks: warm-on-init switch, registration, and what a restore renews."""

from __future__ import annotations

import copy
import random
import sys
import tempfile
import types
from typing import Any

import pytest

from alertfusion import aws, runtime_hooks
from alertfusion.errors import ConfigError, ReasonCode

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("raw", "expected"), [("", False), ("false", False), ("TRUE", True)])
def test_warm_on_init_reads_the_stack_switch(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool
) -> None:
    monkeypatch.setenv(runtime_hooks.WARM_ON_INIT_ENV, raw)
    assert runtime_hooks.warm_on_init() is expected


def test_a_malformed_switch_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(runtime_hooks.WARM_ON_INIT_ENV, "sometimes")
    with pytest.raises(ConfigError) as caught:
        runtime_hooks.warm_on_init()
    assert caught.value.code == ReasonCode.CONFIG_INVALID


class _Engine:
    def __init__(self) -> None:
        self.warmed = 0

    def warm_up(self) -> None:
        self.warmed += 1


def test_prepare_sandbox_loads_and_warms_the_engine_only_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = _Engine()
    loads: list[int] = []

    def load() -> _Engine:
        loads.append(1)
        return engine

    monkeypatch.delenv(runtime_hooks.WARM_ON_INIT_ENV, raising=False)
    assert runtime_hooks.prepare_sandbox(load) is False
    assert loads == [] and engine.warmed == 0
    monkeypatch.setenv(runtime_hooks.WARM_ON_INIT_ENV, "true")
    assert runtime_hooks.prepare_sandbox(load) is True
    assert loads == [1] and engine.warmed == 1


def test_register_uses_the_managed_images_module_when_present(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "snapshot_restore_py", raising=False)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "snapshot" not in p])
    assert runtime_hooks.register() is False
    registered: list[Any] = []
    fake = types.ModuleType("snapshot_restore_py")
    fake.register_after_restore = registered.append  # type: ignore[attr-defined]  # a bare module
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", fake)
    assert runtime_hooks.register() is True
    assert registered == [runtime_hooks.after_restore]


def test_after_restore_forgets_clients_and_temporary_file_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sentinel = object()
    monkeypatch.setitem(aws._clients, "s3", sentinel)
    tempfile.gettempdir()
    tempfile._get_candidate_names()  # type: ignore[attr-defined]  # private
    runtime_hooks.after_restore()
    assert "s3" not in aws._clients
    assert tempfile.tempdir is None
    assert tempfile._name_sequence is None  # type: ignore[attr-defined]  # private


def _draw_after_restore(random_state: Any, names: Any) -> tuple[float, str]:
    """One sandbox restored from the snapshot: the same memory (random state, tempfile's
    name generator, same process id), then the hook, then a draw."""
    random.setstate(random_state)
    tempfile._name_sequence = copy.deepcopy(names)  # type: ignore[attr-defined]  # private
    runtime_hooks.after_restore()
    drawn = random.random()
    return drawn, next(tempfile._get_candidate_names())  # type: ignore[attr-defined]  # private


def test_copies_of_one_snapshot_draw_different_random_values() -> None:
    """A snapshot is memory, restored as is: unlike a fork (where `random` and tempfile
    reseed themselves on the new process id), nothing changes unless the hook renews it."""
    random.seed(1234)
    tempfile._get_candidate_names()  # type: ignore[attr-defined]  # private
    names = copy.deepcopy(tempfile._name_sequence)  # type: ignore[attr-defined]  # private
    snapshot = (random.getstate(), names)
    first = _draw_after_restore(*snapshot)
    second = _draw_after_restore(*snapshot)
    assert first[0] != second[0]
    assert first[1] != second[1]
