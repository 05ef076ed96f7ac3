"""The generated Korean corpus holds what the tokenizer proof (tests/export/tokenizer) needs."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.unit


def test_corpus_has_what_the_proof_needs(corpus: list[str]) -> None:
    import unicodedata

    joined = "".join(corpus)
    assert len(corpus) >= 1_000
    assert any(unicodedata.normalize("NFC", t) != t for t in corpus), "NFD Hangul"
    for needle in ("\t", "\u3000", "\u00a0", "  ", "😭", "[CLS]", "漢字"):
        assert needle in joined, needle
    assert any(t != t.strip() for t in corpus if t.strip()), "leading/trailing spaces"
    assert any(c.isascii() and c.isdigit() for c in joined)
    assert any(len(t) > 300 for t in corpus), "very long lines"
