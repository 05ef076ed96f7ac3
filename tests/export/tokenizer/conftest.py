"""Session-scoped SentencePiece models trained once on the generated Korean corpus."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from model_export.korean_corpus import evaluation_corpus, training_corpus
from model_export.spm_vocab import load_processor, vocab_from_sentencepiece
from model_export.tokenizer import train_demo_spm


def train_spm(out: Path, *, vocab_size: int = 1_000, **options: Any) -> Path:
    """A unigram SentencePiece model with custom trainer options (deterministic)."""
    import sentencepiece as spm

    buffer = io.BytesIO()
    spm.set_random_generator_seed(0)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(training_corpus(10_000, rich=False)),
        model_writer=buffer,
        vocab_size=vocab_size,
        num_threads=1,
        shuffle_input_sentence=False,
        character_coverage=1.0,
        minloglevel=2,
        **{"model_type": "unigram", **options},
    )
    out.write_bytes(buffer.getvalue())
    return out


def legacy_vocab_json(spm_model: Path, out: Path) -> Path:
    """A vocab JSON laid out like KoBERT's separate gluonnlp vocabulary file: gluonnlp's
    ``Vocab(counter)`` order ([UNK], specials, then pieces sorted as strings), written with the
    top-level special fields of older gluonnlp. Its ids differ from the SentencePiece ids."""
    vocab = vocab_from_sentencepiece(load_processor(spm_model))
    specials = ["[CLS]", "[SEP]", "[MASK]", "[PAD]"]
    rest = sorted(t for t in vocab.idx_to_token if t not in specials and t != vocab.unknown_token)
    idx_to_token = [vocab.unknown_token, *specials, *rest]
    out.write_text(
        json.dumps(
            {
                "idx_to_token": idx_to_token,
                "token_to_idx": {t: i for i, t in enumerate(idx_to_token)},
                "reserved_tokens": specials,
                "unknown_token": vocab.unknown_token,
                "padding_token": "[PAD]",
                "bos_token": None,
                "eos_token": None,
                "mask_token": "[MASK]",
                "sep_token": "[SEP]",
                "cls_token": "[CLS]",
            },
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    return out


@pytest.fixture(scope="session")
def spm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("spm")


@pytest.fixture(scope="session")
def kobert_like_model(spm_dir: Path) -> Path:
    """Full size, KoBERT's layout: 8,002 pieces, [UNK]=0 [PAD]=1 [CLS]=2 [SEP]=3 [MASK]=4."""
    return train_demo_spm(spm_dir, vocab_size=8_002)


@pytest.fixture(scope="session")
def plain_model(spm_dir: Path) -> Path:
    """No [PAD]/[CLS]/[SEP]/[MASK] pieces: gluonnlp's rule appends them."""
    return train_demo_spm(spm_dir, vocab_size=1_000, with_special_pieces=False)


@pytest.fixture(scope="session")
def tiny_model(spm_dir: Path) -> Path:
    return train_demo_spm(spm_dir, vocab_size=300)


@pytest.fixture(scope="session")
def legacy_json(kobert_like_model: Path, spm_dir: Path) -> Path:
    return legacy_vocab_json(kobert_like_model, spm_dir / "legacy-vocab.json")


@pytest.fixture(scope="session")
def user_defined_model(spm_dir: Path) -> Path:
    """[MASK] and two Korean strings as user-defined pieces, [CLS]/[SEP] control, pad at 3."""
    return train_spm(
        spm_dir / "user-defined.model",
        unk_piece="[UNK]",
        pad_id=3,
        pad_piece="[PAD]",
        user_defined_symbols=["[MASK]", "112", "도와주세요"],
        control_symbols=["[CLS]", "[SEP]"],
    )


@pytest.fixture(scope="session")
def bos_eos_model(spm_dir: Path) -> Path:
    """bos/eos pieces that are [CLS]/[SEP] themselves (KoBERT's HF tokenizer reads it so)."""
    return train_spm(
        spm_dir / "bos-eos.model",
        unk_piece="[UNK]",
        pad_id=1,
        pad_piece="[PAD]",
        bos_id=2,
        bos_piece="[CLS]",
        eos_id=3,
        eos_piece="[SEP]",
        control_symbols=["[MASK]"],
    )


@pytest.fixture(scope="session")
def identity_model(spm_dir: Path) -> Path:
    return train_spm(spm_dir / "identity.model", normalization_rule_name="identity")


@pytest.fixture(scope="session")
def case_folding_model(spm_dir: Path) -> Path:
    return train_spm(spm_dir / "nmt-nfkc-cf.model", normalization_rule_name="nmt_nfkc_cf")


@pytest.fixture(scope="session")
def raw_whitespace_model(spm_dir: Path) -> Path:
    """Whitespace kept as is (remove_extra_whitespaces=False), no dummy prefix."""
    return train_spm(
        spm_dir / "raw-whitespace.model", remove_extra_whitespaces=False, add_dummy_prefix=False
    )


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    return evaluation_corpus()


@pytest.fixture(scope="session")
def permuted_model(kobert_like_model: Path, spm_dir: Path) -> Path:
    """The KoBERT-like model with its normal pieces in reverse order: ids no longer follow
    the scores (as in a vocabulary re-ordered to match a separate vocab file)."""
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    proto = model_pb2.ModelProto()
    proto.ParseFromString(kobert_like_model.read_bytes())
    pieces = [model_pb2.ModelProto.SentencePiece() for _ in proto.pieces]
    for src, dst in zip(proto.pieces, pieces, strict=True):
        dst.CopyFrom(src)
    head = [p for p in pieces if p.type != 1]
    normal = [p for p in pieces if p.type == 1]
    del proto.pieces[:]
    proto.pieces.extend(head + normal[::-1])
    out = spm_dir / "permuted.model"
    out.write_bytes(proto.SerializeToString())
    return out
