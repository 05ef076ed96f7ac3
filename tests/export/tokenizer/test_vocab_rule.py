"""The vocab rule and vocab JSONs on trained SentencePiece models, and their use in conversion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from model_export.errors import ExportError, ExportReason
from model_export.spm_vocab import load_processor, reference_tokenizer, vocab_from_sentencepiece
from model_export.tokenizer import convert_tokenizer
from tests.export.tokenizer.conftest import train_spm

pytestmark = pytest.mark.export


def test_kobert_layout(kobert_like_model: Path) -> None:
    vocab = vocab_from_sentencepiece(load_processor(kobert_like_model))
    assert len(vocab) == 8_002
    assert [vocab.idx_to_token[i] for i in range(5)] == [
        "[UNK]",
        "[PAD]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
    ]
    artifacts = convert_tokenizer(kobert_like_model)
    assert (artifacts.vocab_size, artifacts.unk_id, artifacts.pad_id) == (8_002, 0, 1)
    assert (artifacts.cls_id, artifacts.sep_id, artifacts.mask_id) == (2, 3, 4)
    assert artifacts.max_len == 60


def test_plain_model_gets_specials_appended(plain_model: Path) -> None:
    processor = load_processor(plain_model)
    vocab = vocab_from_sentencepiece(processor)
    n = processor.get_piece_size()
    assert all(vocab[processor.id_to_piece(i)] == i for i in range(n))
    appended = {vocab.idx_to_token[i] for i in range(n, len(vocab))}
    assert appended == {"[CLS]", "[SEP]", "[MASK]", "[PAD]"}
    artifacts = convert_tokenizer(plain_model)
    assert artifacts.vocab_size == n + 4
    assert {artifacts.cls_id, artifacts.sep_id, artifacts.mask_id, artifacts.pad_id} == set(
        range(n, n + 4)
    )


def test_bos_eos_pieces_named_cls_sep_are_not_duplicated(bos_eos_model: Path) -> None:
    artifacts = convert_tokenizer(bos_eos_model)
    assert (artifacts.cls_id, artifacts.sep_id, artifacts.pad_id, artifacts.mask_id) == (2, 3, 1, 4)
    assert artifacts.vocab_size == load_processor(bos_eos_model).get_piece_size()


def test_pad_piece_other_than_pad_token_is_refused(spm_dir: Path) -> None:
    # gluonnlp asserts that padding_token="[PAD]" equals the model's own pad piece.
    model = train_spm(spm_dir / "pad-piece.model", pad_id=3, pad_piece="<pad>")
    with pytest.raises(ExportError) as err:
        convert_tokenizer(model)
    assert err.value.reason is ExportReason.TOKENIZER_INVALID
    assert "<pad>" in err.value.message


def test_vocab_json_wins(kobert_like_model: Path, legacy_json: Path) -> None:
    plain = convert_tokenizer(kobert_like_model)
    with_json = convert_tokenizer(kobert_like_model, legacy_json)
    # The legacy layout puts the specials first and sorts the pieces as strings.
    assert (with_json.unk_id, with_json.cls_id, with_json.sep_id) == (0, 1, 2)
    assert (with_json.mask_id, with_json.pad_id) == (3, 4)
    text = "도와주세요 지갑을 도둑맞았어요"
    ids_plain = Tokenizer.from_str(plain.tokenizer_json).encode(text).ids
    ids_json = Tokenizer.from_str(with_json.tokenizer_json).encode(text).ids
    assert ids_plain != ids_json
    assert ids_plain == reference_tokenizer(kobert_like_model).encode(text)
    assert ids_json == reference_tokenizer(kobert_like_model, legacy_json).encode(text)


def test_vocab_json_of_another_model_is_refused(
    kobert_like_model: Path, plain_model: Path, spm_dir: Path
) -> None:
    from tests.export.tokenizer.conftest import legacy_vocab_json

    other = legacy_vocab_json(plain_model, spm_dir / "other-vocab.json")
    with pytest.raises(ExportError) as err:
        convert_tokenizer(kobert_like_model, other)
    assert err.value.reason is ExportReason.TOKENIZER_INVALID
    assert "lacks" in err.value.message


def test_json_missing_padding_is_refused_at_conversion(
    kobert_like_model: Path, legacy_json: Path, tmp_path: Path
) -> None:
    payload = json.loads(legacy_json.read_text(encoding="utf-8"))
    payload["padding_token"] = None
    with pytest.raises(ExportError) as err:
        convert_tokenizer(kobert_like_model, _write(tmp_path, payload))
    assert "padding_token" in err.value.message


@pytest.mark.parametrize(
    "content", [b"", b"not json", b"[1, 2, 3]", b"\xff\xfe\x00garbage", b'{"idx_to_token": 5}']
)
def test_json_unreadable_is_refused(
    kobert_like_model: Path, tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(ExportError) as err:
        convert_tokenizer(kobert_like_model, path)
    assert err.value.reason is ExportReason.TOKENIZER_INVALID


def test_json_missing_file_is_refused(kobert_like_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError) as err:
        convert_tokenizer(kobert_like_model, tmp_path / "nope.json")
    assert "does not exist" in err.value.message


def test_bert_sp_path_splits_before_sentencepiece(kobert_like_model: Path) -> None:
    plain = reference_tokenizer(kobert_like_model)
    bert_sp = reference_tokenizer(kobert_like_model, bert_basic=True)
    # SentencePiece on "요!" vs SentencePiece on "요" and "!" separately (each gets a ▁).
    assert "▁!" not in plain.pieces("도와주세요!")
    assert bert_sp.pieces("도와주세요!")[-1] in ("▁!", "!")
    assert bert_sp.pieces("도와주세요!") == plain.pieces("도와주세요") + plain.pieces("!")
    assert plain.pieces("도와주세요 살려주세요") == bert_sp.pieces("도와주세요 살려주세요")


def _write(tmp_path: Path, payload: object, name: str = "vocab.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
    return path
