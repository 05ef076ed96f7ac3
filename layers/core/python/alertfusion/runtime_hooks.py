"""Sandbox start-up for the image functions: warm the engine during init, renew after a restore.

With SnapStart (``-c snapstart=true``) Lambda runs a published version's init once, snapshots
the sandbox and starts every later sandbox from a copy of that snapshot. Whatever init made is
then shared by every copy: :func:`after_restore` renews what copies must not share. With
SnapStart or provisioned concurrency the stack sets ``ALERTFUSION_WARM_ON_INIT=true``, and
:func:`prepare_sandbox` loads the engine (bundle checked, ONNX Runtime sessions created) during
init, so the snapshot, or the sandbox provisioned ahead of traffic, already holds it.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
from collections.abc import Callable

from alertfusion.errors import ConfigError

WARM_ON_INIT_ENV = "ALERTFUSION_WARM_ON_INIT"

_TRUE = ("1", "true", "yes")
_FALSE = ("", "0", "false", "no")


def warm_on_init() -> bool:
    """Whether init loads the engine (``ALERTFUSION_WARM_ON_INIT``; default: no)."""
    raw = os.environ.get(WARM_ON_INIT_ENV, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{WARM_ON_INIT_ENV} must be true or false, got {raw!r}")


def after_restore() -> None:
    """Renew, in a sandbox restored from a snapshot, what its copies must not share: the
    random state, the temporary-directory state and the cached AWS clients (their
    connections and credentials belong to the sandbox that took the snapshot), and the
    bundle's self-check, which holds only for the CPU it ran on."""
    _reseed_random()
    _renew_temporary_files()
    from alertfusion import aws

    aws.reset_clients()
    if "alertfusion.engine" in sys.modules:
        # the snapshot may come from a host with another CPU: int8 is checked again here
        from alertfusion.engine import recheck_engine

        recheck_engine()


def register() -> bool:
    """Register :func:`after_restore` with the runtime. The managed Lambda Python images
    (3.12 and later) ship ``snapshot_restore_py``, which calls it after each restore;
    elsewhere (local runs, tests, images without SnapStart) there is nothing to register
    with and nothing is restored, so this returns False."""
    try:
        from snapshot_restore_py import register_after_restore
    except ImportError:
        return False
    register_after_restore(after_restore)
    return True


def prepare_sandbox(load_engine: Callable[[], object]) -> bool:
    """At a handler module's import: register the restore hook, and load the engine now
    when the stack asks for it (``load_engine`` returns the engine; its ``warm_up`` creates
    the sessions). Returns whether the engine was loaded."""
    register()
    if not warm_on_init():
        return False
    engine = load_engine()
    warm_up = getattr(engine, "warm_up", None)
    if callable(warm_up):
        warm_up()
    return True


def _reseed_random() -> None:
    # `random` serves the retry jitter: copies seeded alike would retry in lockstep.
    random.seed(os.urandom(32))
    numpy = sys.modules.get("numpy")
    if numpy is not None:  # the legacy global generator, if anything seeded or used it
        numpy.random.seed(int.from_bytes(os.urandom(4), "big"))


def _renew_temporary_files() -> None:
    # tempfile caches the directory it chose and the random generator of its names; copies
    # sharing that generator would draw the same "unique" names.
    tempfile.tempdir = None
    tempfile._name_sequence = None  # type: ignore[attr-defined]  # private, not in typeshed
