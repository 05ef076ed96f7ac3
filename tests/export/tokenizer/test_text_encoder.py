"""alertfusion.text.TextEncoder on a KoBERT-like tokenizer, checked against the reference path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from alertfusion.text import INPUT_NAMES, EncodedText, TextEncoder
from model_export.spm_vocab import reference_tokenizer
from model_export.tokenizer import check_against_reference, convert_tokenizer

pytestmark = pytest.mark.export


@pytest.fixture(scope="module")
def tokenizer_file(kobert_like_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bundle") / "tokenizer.json"
    path.write_text(convert_tokenizer(kobert_like_model).tokenizer_json, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def encoder(tokenizer_file: Path) -> TextEncoder:
    return TextEncoder.from_file(tokenizer_file, max_len=60)


def test_arrays_match_the_reference(
    encoder: TextEncoder, tokenizer_file: Path, kobert_like_model: Path, corpus: list[str]
) -> None:
    texts = corpus[:300]
    reference = reference_tokenizer(kobert_like_model)
    # Exact-score ties (see model_export.tokenizer) are compared with tokenizers' own answer.
    tokenizer_json = tokenizer_file.read_text(encoding="utf-8")
    ties = set(check_against_reference(tokenizer_json, kobert_like_model, None, texts).ties)
    plain = Tokenizer.from_str(tokenizer_json)
    checked = 0
    for text in texts:
        encoded = encoder.encode(text)
        expected = plain.encode(text).ids if text in ties else reference.encode(text, max_len=60)
        if encoded is None:
            assert expected == [reference.cls_id, reference.sep_id]
            continue
        assert encoded.input_ids.dtype == np.int64 and encoded.input_ids.shape == (1, len(expected))
        assert encoded.input_ids[0].tolist() == expected
        assert (encoded.attention_mask == 1).all() and encoded.attention_mask.dtype == np.int64
        assert (encoded.token_type_ids == 0).all() and encoded.token_type_ids.dtype == np.int64
        assert encoded.n_tokens == len(expected) <= 60
        checked += 1
    assert checked > 250


def test_truncates_to_the_manifest_max_len(tokenizer_file: Path, kobert_like_model: Path) -> None:
    text = "도와주세요 지갑을 도둑맞았어요 " * 30
    short = TextEncoder.from_file(tokenizer_file, max_len=16).encode(text)
    assert short is not None and short.n_tokens == 16
    assert short.input_ids[0].tolist() == reference_tokenizer(kobert_like_model).encode(
        text, max_len=16
    )
    assert short.input_ids[0, -1] == 3  # [SEP] survives truncation


def test_feeds(encoder: TextEncoder) -> None:
    encoded = encoder.encode("살려주세요")
    assert isinstance(encoded, EncodedText)
    feeds = encoded.feeds()
    assert tuple(feeds) == INPUT_NAMES
    assert feeds["input_ids"] is encoded.input_ids
    assert encoder.cls_id == 2 and encoder.sep_id == 3 and encoder.vocab_size >= 8_002
