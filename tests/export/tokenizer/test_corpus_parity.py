"""The proof: tokenizer.json gives the reference path's ids on the generated Korean corpus."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer

from model_export.spm_vocab import reference_tokenizer
from model_export.tokenizer import Pipeline, check_against_reference, convert_tokenizer

pytestmark = pytest.mark.export

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
    ("case_folding_model", None),
    ("raw_whitespace_model", None),
]
# SentencePiece sums path scores in float32; where two segmentations score exactly the same
# (". .." vs ".. ."), its rounding decides. Those ties are the only tolerated difference, and
# they must stay rare.
MAX_TIE_FRACTION = 0.05


# The gluonnlp BERTSPTokenizer path, for the models KoBERT-style checkpoints could come with.
BERT_SP_CASES = [
    ("kobert_like_model", None),
    ("kobert_like_model", "legacy_json"),
    ("plain_model", None),
    ("tiny_model", None),
    ("bos_eos_model", None),
]


@pytest.mark.parametrize(
    ("model_name", "json_name", "pipeline"),
    [(*case, "sentencepiece") for case in CASES] + [(*case, "bert_sp") for case in BERT_SP_CASES],
)
def test_ids_equal_reference_on_corpus(
    request: pytest.FixtureRequest,
    model_name: str,
    json_name: str | None,
    pipeline: Pipeline,
    corpus: list[str],
) -> None:
    model: Path = request.getfixturevalue(model_name)
    vocab_json: Path | None = request.getfixturevalue(json_name) if json_name else None
    assert len(corpus) >= 1_000
    artifacts = convert_tokenizer(model, vocab_json, pipeline=pipeline)
    assert artifacts.pipeline == pipeline
    report = check_against_reference(
        artifacts.tokenizer_json, model, vocab_json, corpus, pipeline=pipeline
    )
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
    # Long texts hold many "..." runs, where float32 ties happen; still a small minority.
    assert len(report.ties) <= 0.1 * len(long_texts)


def _korean_soup(seed: int, n: int) -> list[str]:
    """Random strings over what Korean text is made of (syllables, jamo in every form,
    Latin, digits, punctuation, odd whitespace, emoji), without combining marks."""
    import random

    rng = random.Random(seed)
    alphabet = (
        [chr(c) for c in range(0xAC00, 0xAC00 + 600)]
        + [chr(c) for c in range(0x1100, 0x1113)]
        + [chr(c) for c in range(0x1161, 0x1176)]
        + [chr(c) for c in range(0x11A8, 0x11C3)]
        + [chr(c) for c in range(0x3131, 0x3164)]
        + [chr(c) for c in range(0xFFA0, 0xFFDD)]
        + [chr(c) for c in range(0x21, 0x7F)]
        + [chr(c) for c in range(0xFF01, 0xFF5F)]
        + list("  \t\n\u3000\u00a0\u200b…·「」『』😭🚨👍🏽")
    )
    return ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 30))) for _ in range(n)]


@pytest.mark.parametrize("pipeline", ["sentencepiece", "bert_sp"])
def test_random_korean_text_is_exact(kobert_like_model: Path, pipeline: Pipeline) -> None:
    texts = _korean_soup(seed=7, n=3_000)
    artifacts = convert_tokenizer(kobert_like_model, pipeline=pipeline)
    report = check_against_reference(
        artifacts.tokenizer_json, kobert_like_model, None, texts, pipeline=pipeline
    )
    assert report.mismatches == (), report.mismatches[:3]
    assert len(report.ties) <= MAX_TIE_FRACTION * len(texts)
