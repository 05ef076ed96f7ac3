"""alertfusion.text.TextEncoder on the tiny bundle's tokenizer (reference parity: tests/export)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from alertfusion.errors import BundleError, ReasonCode, TextError
from alertfusion.text import TextEncoder

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def tokenizer_file(tiny_bundle: Path) -> Path:
    """A converted tokenizer: the tiny demo bundle's (a SentencePiece model in KoBERT's layout)."""
    return tiny_bundle / "tokenizer.json"


@pytest.fixture(scope="module")
def encoder(tokenizer_file: Path) -> TextEncoder:
    return TextEncoder.from_file(tokenizer_file, max_len=60)


@pytest.mark.parametrize("text", [None, "", " ", "   ", "\t\n", "\u3000\u00a0", "\u200b", "\x7f"])
def test_no_text_is_none(encoder: TextEncoder, text: str | None) -> None:
    assert encoder.encode(text) is None


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


@pytest.mark.parametrize("text", [b"bytes", 42, ["list"]])
def test_non_text_is_a_typed_error(encoder: TextEncoder, text: object) -> None:
    with pytest.raises(TextError) as err:
        encoder.encode(text)  # type: ignore[arg-type]  # on purpose
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
