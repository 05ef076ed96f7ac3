"""The generated Korean evaluation corpus (the SentencePiece models are in tests/export)."""

from __future__ import annotations

import pytest

from model_export.korean_corpus import evaluation_corpus


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    return evaluation_corpus()
