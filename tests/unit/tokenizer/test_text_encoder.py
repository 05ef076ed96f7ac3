"""alertfusion.text.TextEncoder: the runtime side, checked against the reference path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from alertfusion.errors import BundleError, ReasonCode, TextError
from alertfusion.text import INPUT_NAMES, EncodedText, TextEncoder
from model_export.spm_vocab import reference_tokenizer
from model_export.tokenizer import check_against_reference, convert_tokenizer

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def tokenizer_file(kobert_like_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bundle") / "tokenizer.json"
    path.write_text(convert_tokenizer(kobert_like_model).tokenizer_json, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def encoder(tokenizer_file: Path) -> TextEncoder:
    return TextEncoder.from_file(tokenizer_file, max_len=60)


@pytest.mark.parametrize("text", [None, "", " ", "   ", "\t\n", "\u3000\u00a0", "\u200b", "\x7f"])
def test_no_text_is_none(encoder: TextEncoder, text: str | None) -> None:
    assert encoder.encode(text) is None


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


def test_encode_batch_equals_encode(encoder: TextEncoder, corpus: list[str]) -> None:
    texts: list[str | None] = [None, "", *corpus[20:80], "  "]
    batch = encoder.encode_batch(texts)
    assert len(batch) == len(texts)
    for text, got in zip(texts, batch, strict=True):
        one = encoder.encode(text)
        if one is None:
            assert got is None
        else:
            assert got is not None and np.array_equal(got.input_ids, one.input_ids)


def test_feeds(encoder: TextEncoder) -> None:
    encoded = encoder.encode("살려주세요")
    assert isinstance(encoded, EncodedText)
    feeds = encoded.feeds()
    assert tuple(feeds) == INPUT_NAMES
    assert feeds["input_ids"] is encoded.input_ids
    assert encoder.cls_id == 2 and encoder.sep_id == 3 and encoder.vocab_size >= 8_002


@pytest.mark.parametrize("text", [b"bytes", 42, ["list"]])
def test_non_text_is_a_typed_error(encoder: TextEncoder, text: object) -> None:
    with pytest.raises(TextError) as err:
        encoder.encode(text)  # type: ignore[arg-type]
    assert err.value.code is ReasonCode.INVALID_INPUT


def test_lone_surrogate_is_a_typed_error(encoder: TextEncoder) -> None:
    with pytest.raises(TextError) as err:
        encoder.encode("도와\ud800주세요")
    assert err.value.code is ReasonCode.INVALID_INPUT
    with pytest.raises(TextError):
        encoder.encode_batch(["ok", "\udfff"])


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BundleError) as err:
        TextEncoder.from_file(tmp_path / "tokenizer.json", max_len=60)
    assert err.value.code is ReasonCode.BUNDLE_INVALID


@pytest.mark.parametrize("content", ["", "{}", "not json", '{"model": {"type": "Nope"}}'])
def test_invalid_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "tokenizer.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(BundleError) as err:
        TextEncoder.from_file(path, max_len=60)
    assert err.value.code is ReasonCode.BUNDLE_INVALID


def test_tokenizer_without_cls_sep_is_refused(tmp_path: Path, tokenizer_file: Path) -> None:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.post_processor = None
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    with pytest.raises(BundleError, match="CLS"):
        TextEncoder.from_file(path, max_len=60)


def test_max_len_too_small(tokenizer_file: Path) -> None:
    with pytest.raises(ValueError, match="max_len"):
        TextEncoder.from_file(tokenizer_file, max_len=2)


def test_import_is_light() -> None:
    code = (
        "import sys, alertfusion.text; "
        "heavy = {'tokenizers', 'numpy', 'sentencepiece', 'torch'} & set(sys.modules); "
        "print(sorted(heavy)); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
