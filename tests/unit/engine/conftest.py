"""Engines on the tiny bundles, shared by the engine tests (sessions are created once)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from alertfusion.engine import Engine
from tests.conftest import SAMPLES

HELP_WAV = SAMPLES / "ko-help-16k.wav"
LONG_WAV = SAMPLES / "ko-violence-long-16k.wav"
HELP_TEXT = "도와주세요"


@pytest.fixture(scope="session")
def engine(tiny_bundle: Path) -> Iterator[Engine]:
    """The tiny fp32 bundle with its manifest's gate."""
    eng = Engine.from_bundle(tiny_bundle)
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def engine_int8(tiny_bundle_int8: Path) -> Iterator[Engine]:
    eng = Engine.from_bundle(tiny_bundle_int8)
    yield eng
    eng.close()
