"""The proof: tokenizer.json gives the reference path's ids on the generated Korean corpus."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer

from model_export.spm_vocab import reference_tokenizer
from model_export.tokenizer import check_against_reference, convert_tokenizer

pytestmark = pytest.mark.unit

# (model fixture, vocab JSON fixture or None)
CASES = [
    ("kobert_like_model", None),
    ("kobert_like_model", "legacy_json"),
    ("permuted_model", None),
    ("plain_model", None),
    ("tiny_model", None),
    ("user_defined_model", None),
    ("bos_eos_model", None),
    ("identity_model", None),
    ("raw_whitespace_model", None),
]
# SentencePiece sums path scores in float32; where two segmentations score exactly the same
# (". .." vs ".. ."), its rounding decides. Those ties are the only tolerated difference, and
# they must stay rare.
MAX_TIE_FRACTION = 0.02


@pytest.mark.parametrize(("model_name", "json_name"), CASES)
def test_ids_equal_reference_on_corpus(
    request: pytest.FixtureRequest, model_name: str, json_name: str | None, corpus: list[str]
) -> None:
    model: Path = request.getfixturevalue(model_name)
    vocab_json: Path | None = request.getfixturevalue(json_name) if json_name else None
    assert len(corpus) >= 1_000
    artifacts = convert_tokenizer(model, vocab_json)
    report = check_against_reference(artifacts.tokenizer_json, model, vocab_json, corpus)
    assert report.n_texts == len(corpus)
    assert report.mismatches == (), (
        f"{len(report.mismatches)} mismatches, e.g. {report.mismatches[:3]!r}"
    )
    assert len(report.ties) <= MAX_TIE_FRACTION * len(corpus)


@pytest.mark.parametrize("max_len", [3, 8, 60, 512])
def test_truncation_matches_reference(
    kobert_like_model: Path, corpus: list[str], max_len: int
) -> None:
    artifacts = convert_tokenizer(kobert_like_model, max_len=max_len)
    tokenizer = Tokenizer.from_str(artifacts.tokenizer_json)
    reference = reference_tokenizer(kobert_like_model)
    long_texts = [t for t in corpus if len(reference.pieces(t)) > max_len - 2]
    assert len(long_texts) >= 10, "the corpus must contain texts longer than max_len"
    for text in long_texts:
        ids = tokenizer.encode(text).ids
        assert len(ids) == max_len
        assert ids[0] == artifacts.cls_id and ids[-1] == artifacts.sep_id
    report = check_against_reference(
        artifacts.tokenizer_json, kobert_like_model, None, long_texts, max_len=max_len
    )
    assert report.exact, report.mismatches[:3]
    assert len(report.ties) <= MAX_TIE_FRACTION * len(long_texts) + 1


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
