"""convert_tokenizer refuses what is not a supported SentencePiece model (TOKENIZER_INVALID)."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_export.errors import ExportError, ExportReason
from model_export.tokenizer import convert_tokenizer
from tests.export.tokenizer.conftest import train_spm

pytestmark = pytest.mark.export


def _refused(model: Path, *needles: str) -> str:
    with pytest.raises(ExportError) as err:
        convert_tokenizer(model)
    assert err.value.reason is ExportReason.TOKENIZER_INVALID
    for needle in needles:
        assert needle in err.value.message
    return err.value.message


def test_missing_file(tmp_path: Path) -> None:
    _refused(tmp_path / "absent.model", "does not exist")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.model"
    path.write_bytes(b"")
    _refused(path, "empty")


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes(tmp_path: Path, seed: int) -> None:
    import random

    path = tmp_path / "random.model"
    path.write_bytes(random.Random(seed).randbytes(4096))
    _refused(path)


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "vocab.txt"
    path.write_text("[UNK]\n[PAD]\n[CLS]\n▁안녕\t-3.2\n", encoding="utf-8")
    _refused(path)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.99])
def test_truncated_model(kobert_like_model: Path, tmp_path: Path, fraction: float) -> None:
    data = kobert_like_model.read_bytes()
    path = tmp_path / "truncated.model"
    path.write_bytes(data[: int(len(data) * fraction)])
    _refused(path)


def test_directory(tmp_path: Path) -> None:
    _refused(tmp_path)


@pytest.mark.parametrize("model_type", ["bpe", "char", "word"])
def test_other_model_types_are_refused(spm_dir: Path, model_type: str) -> None:
    extra = {} if model_type == "bpe" else {"use_all_vocab": True}
    model = train_spm(
        spm_dir / f"{model_type}.model", vocab_size=500, model_type=model_type, **extra
    )
    _refused(model, model_type, "unigram")


def test_byte_fallback_is_refused(spm_dir: Path) -> None:
    model = train_spm(spm_dir / "byte-fallback.model", byte_fallback=True)
    _refused(model, "byte fallback")


def test_whitespace_as_suffix_is_refused(spm_dir: Path) -> None:
    model = train_spm(spm_dir / "suffix.model", treat_whitespace_as_suffix=True)
    _refused(model, "treat_whitespace_as_suffix")


@pytest.mark.parametrize("rule", ["nfkc", "nfkc_cf"])
def test_nfkc_without_a_deleted_character_is_refused(spm_dir: Path, rule: str) -> None:
    # Plain "nfkc" deletes nothing, so combining marks cannot be kept apart exactly.
    model = train_spm(spm_dir / f"{rule}.model", normalization_rule_name=rule)
    _refused(model, rule)


def test_custom_normalisation_rules_are_refused(spm_dir: Path) -> None:
    rules = spm_dir / "rules.tsv"
    rules.write_text("41\t61\n", encoding="utf-8")  # A -> a
    model = train_spm(spm_dir / "custom-rules.model", normalization_rule_tsv=str(rules))
    _refused(model, "user_defined")


def test_user_defined_piece_changed_by_the_normaliser_is_refused(spm_dir: Path) -> None:
    # SentencePiece never normalises a user-defined piece; a full-width one would be.
    model = train_spm(spm_dir / "ud-fullwidth.model", user_defined_symbols=["ＳＯＳ"])
    _refused(model, "ＳＯＳ")


def test_max_len_too_small(kobert_like_model: Path) -> None:
    with pytest.raises(ValueError, match="max_len"):
        convert_tokenizer(kobert_like_model, max_len=2)
