"""train_demo_spm: deterministic demo SentencePiece models laid out like KoBERT's."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_export.spm_vocab import load_processor
from model_export.tokenizer import convert_tokenizer, train_demo_spm

pytestmark = pytest.mark.export


def test_same_arguments_same_bytes(tmp_path: Path, kobert_like_model: Path) -> None:
    again = train_demo_spm(tmp_path / "again", vocab_size=8_002)
    assert again.read_bytes() == kobert_like_model.read_bytes()
    assert again.name == kobert_like_model.name
    # No path (or anything else about where it was trained) ends up in the model.
    assert str(tmp_path).encode() not in again.read_bytes()


def test_tiny_is_deterministic_and_seeded(tmp_path: Path) -> None:
    a = train_demo_spm(tmp_path / "a", vocab_size=300, seed=1)
    b = train_demo_spm(tmp_path / "b", vocab_size=300, seed=1)
    c = train_demo_spm(tmp_path / "c", vocab_size=300, seed=2)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_kobert_layout(kobert_like_model: Path) -> None:
    sp = load_processor(kobert_like_model)
    assert sp.get_piece_size() == 8_002
    assert [sp.id_to_piece(i) for i in range(5)] == ["[UNK]", "[PAD]", "[CLS]", "[SEP]", "[MASK]"]
    assert (sp.unk_id(), sp.pad_id(), sp.bos_id(), sp.eos_id()) == (0, 1, -1, -1)
    assert all(sp.is_control(i) for i in range(1, 5))
    # Literal special-token text is not a special token.
    assert 2 not in sp.encode("[CLS] 도와주세요")


def test_without_special_pieces(plain_model: Path) -> None:
    sp = load_processor(plain_model)
    assert sp.get_piece_size() == 1_000
    pieces = {sp.id_to_piece(i) for i in range(sp.get_piece_size())}
    assert not pieces & {"[PAD]", "[CLS]", "[SEP]", "[MASK]"}
    assert sp.id_to_piece(sp.unk_id()) == "[UNK]" and sp.pad_id() == -1


@pytest.mark.parametrize("vocab_size", [150, 300, 1_000, 3_000])
def test_sizes(tmp_path: Path, vocab_size: int) -> None:
    model = train_demo_spm(tmp_path, vocab_size=vocab_size)
    assert load_processor(model).get_piece_size() == vocab_size
    artifacts = convert_tokenizer(model)
    assert artifacts.vocab_size == vocab_size


def test_small_models_know_special_token_characters(tiny_model: Path) -> None:
    # Otherwise "[CLS]" typed in a text would be one unknown run, which gluonnlp maps to the
    # [CLS] id (a string lookup) and tokenizers to [UNK].
    sp = load_processor(tiny_model)
    for char in "[]UNKPADCLSEPM":
        assert sp.piece_to_id(char) != sp.unk_id() or sp.piece_to_id("▁" + char) != sp.unk_id()
    assert sp.unk_id() not in sp.encode("[CLS][SEP][PAD][MASK][UNK]")


@pytest.mark.parametrize("vocab_size", [10, 20_000])
def test_impossible_sizes_are_a_clear_error(tmp_path: Path, vocab_size: int) -> None:
    with pytest.raises(ValueError, match=f"{vocab_size}-piece"):
        train_demo_spm(tmp_path, vocab_size=vocab_size)
