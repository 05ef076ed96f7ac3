"""The speech-to-text model runs alone, before the models that read its transcript: its
sessions get every core the process may use; the classifier's keep one thread each (they run
side by side); an explicit thread count applies to all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from alertfusion.engine import Engine

pytestmark = [pytest.mark.export, pytest.mark.slow]


def test_the_transcriber_gets_every_core(offline_bundle: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    engine = Engine.from_bundle(offline_bundle)
    assert engine.sessions.options_for("stt").intra_op_threads == cores
    for name in ("audio_binary", "audio_multiclass", "text"):
        assert engine.sessions.options_for(name).intra_op_threads == 1
    pinned = Engine.from_bundle(offline_bundle, threads=1)
    assert pinned.sessions.options_for("stt").intra_op_threads == 1


def test_a_bundle_without_a_transcriber_is_unchanged(tiny_bundle: Path) -> None:
    engine = Engine.from_bundle(tiny_bundle)
    for name in engine.sessions.names:
        assert engine.sessions.options_for(name).intra_op_threads == 1
