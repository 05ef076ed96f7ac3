"""gluonnlp's BERTVocab id rule (spm_vocab), vocab JSON loading, BERT basic tokenization."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from model_export.errors import ExportError, ExportReason
from model_export.spm_vocab import (
    build_vocab,
    vocab_from_json,
)

pytestmark = pytest.mark.unit


def test_rule_appends_missing_specials_in_swap_order() -> None:
    # Worked by hand from gluonnlp v0.x Vocab.__init__ + _sort_index_according_to_user_spec:
    #   initial   [UNK] [CLS] [SEP] [MASK] [PAD] | counter keys by string order: b, ▁a
    #           = [UNK] [CLS] [SEP] [MASK] [PAD] b ▁a
    #   ▁a -> 1:  [UNK] ▁a [SEP] [MASK] [PAD] b [CLS]
    #   b  -> 2:  [UNK] ▁a b [MASK] [PAD] [SEP] [CLS]
    # so [MASK]=3 [PAD]=4 [SEP]=5 [CLS]=6 (not "[MASK], [SEP], [CLS], ..., padding").
    vocab = build_vocab(
        ["[UNK]", "▁a", "b"],
        unknown_token="[UNK]",
        padding_token="[PAD]",
        bos_token=None,
        eos_token=None,
    )
    assert vocab.idx_to_token == ("[UNK]", "▁a", "b", "[MASK]", "[PAD]", "[SEP]", "[CLS]")
    assert [vocab.special_id(f"{n}_token") for n in ("mask", "padding", "sep", "cls")] == [
        3,
        4,
        5,
        6,
    ]


def test_rule_keeps_the_models_own_pad_and_appends_the_rest() -> None:
    #   initial   [UNK] [CLS] [SEP] [MASK] [PAD] b ▁a     ([PAD] is a piece, so not re-added)
    #   [PAD]->1: [UNK] [PAD] [SEP] [MASK] [CLS] b ▁a
    #   ▁a -> 2:  [UNK] [PAD] ▁a [MASK] [CLS] b [SEP]
    #   b  -> 3:  [UNK] [PAD] ▁a b [CLS] [MASK] [SEP]
    vocab = build_vocab(
        ["[UNK]", "[PAD]", "▁a", "b"],
        unknown_token="[UNK]",
        padding_token="[PAD]",
        bos_token=None,
        eos_token=None,
    )
    assert vocab.idx_to_token == ("[UNK]", "[PAD]", "▁a", "b", "[CLS]", "[MASK]", "[SEP]")
    assert vocab["never seen"] == vocab.unk_id == 0
    assert len(vocab) == 7


def _write(tmp_path: Path, payload: object, name: str = "vocab.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
    return path


def _valid() -> dict[str, object]:
    tokens = ["[UNK]", "[PAD]", "[CLS]", "[SEP]", "[MASK]", "▁가"]
    return {
        "idx_to_token": tokens,
        "token_to_idx": {t: i for i, t in enumerate(tokens)},
        "unknown_token": "[UNK]",
        "reserved_tokens": ["[PAD]", "[CLS]", "[SEP]", "[MASK]"],
        "padding_token": "[PAD]",
        "bos_token": None,
        "eos_token": None,
        "mask_token": "[MASK]",
        "sep_token": "[SEP]",
        "cls_token": "[CLS]",
    }


def test_json_both_gluonnlp_layouts(tmp_path: Path) -> None:
    old = vocab_from_json(_write(tmp_path, _valid(), "old.json"))
    new_payload = _valid()
    fields = ("padding_token", "bos_token", "eos_token", "mask_token", "sep_token", "cls_token")
    new_payload["identifiers_to_tokens"] = {k: new_payload.pop(k) for k in fields}
    new = vocab_from_json(_write(tmp_path, new_payload, "new.json"))
    for vocab in (old, new):
        assert [vocab.special_id(f"{n}_token") for n in ("cls", "sep", "padding", "mask")] == [
            2,
            3,
            1,
            4,
        ]
        assert vocab["▁가"] == 5 and vocab["▁나"] == 0


def test_json_absent_bert_fields_take_bertvocab_defaults(tmp_path: Path) -> None:
    payload = _valid()
    del payload["cls_token"], payload["sep_token"], payload["mask_token"]
    vocab = vocab_from_json(_write(tmp_path, payload))
    assert (vocab.cls_token, vocab.sep_token, vocab.mask_token) == ("[CLS]", "[SEP]", "[MASK]")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.pop("idx_to_token"), "idx_to_token"),
        (lambda p: p.pop("token_to_idx"), "token_to_idx"),
        (lambda p: p.pop("unknown_token"), "unknown_token"),
        (lambda p: p.update(unknown_token="<unk>"), "unknown_token"),
        (lambda p: p["token_to_idx"].update({"▁가": 4}), "disagrees"),
        (lambda p: p["token_to_idx"].update({"▁가": "5"}), "integers"),
        (lambda p: p["token_to_idx"].update({"▁가": 99}), "disagrees"),
        (lambda p: p.update(cls_token="<cls>"), "cls_token"),
        (lambda p: p.update(cls_token=7), "cls_token"),
        (lambda p: p.update(identifiers_to_tokens={"cls_token": "[CLS]"}), "twice"),
        (lambda p: p.update(idx_to_token=[], token_to_idx={}), "unknown_token|empty"),
    ],
)
def test_json_inconsistent_is_refused(
    tmp_path: Path, mutate: Callable[[dict[str, object]], object], message: str
) -> None:
    import re

    payload = _valid()
    mutate(payload)
    with pytest.raises(ExportError) as err:
        vocab_from_json(_write(tmp_path, payload))
    assert err.value.reason is ExportReason.TOKENIZER_INVALID
    assert re.search(message, err.value.message)


def test_bert_basic_tokenizer_matches_gluonnlp_docstrings() -> None:
    from model_export.spm_vocab import bert_basic_tokenize

    # gluonnlp BERTBasicTokenizer(lower=False) docstring example.
    assert bert_basic_tokenize(" \tHeLLo!how  \n Are yoU?  ") == [
        "HeLLo",
        "!",
        "how",
        "Are",
        "yoU",
        "?",
    ]
    # CJK ideographs stand alone; Hangul does not; controls and U+FFFD are dropped.
    assert bert_basic_tokenize("gluonnlp: 使NLP变得简单。") == [
        "gluonnlp", ":", "使", "NLP", "变", "得", "简", "单", "。",
    ]  # fmt: skip
    assert bert_basic_tokenize("도와\x00주세요\ufffd…010-1") == ["도와주세요", "…", "010", "-", "1"]
