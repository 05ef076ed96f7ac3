"""The reference path: SentencePiece pieces -> ids by gluonnlp's BERTVocab rule, as KoBERT used it.

gluonnlp (MXNet) cannot be installed any more, so this module re-implements, line for line,
what KoBERT ran (``BERTVocab.from_sentencepiece(spiece, padding_token="[PAD]")`` and, for a
saved vocabulary, ``BERTVocab.from_json``), from the gluonnlp v0.x sources:

- ``src/gluonnlp/vocab/bert.py`` (dmlc/gluon-nlp @040c441c): ``from_sentencepiece`` builds
  ``token_to_idx = {piece: sentencepiece id}`` and takes unknown/bos/eos/padding from the
  model's ``unk_id()/bos_id()/eos_id()/pad_id()`` where they are >= 0 (asserting that a given
  ``padding_token`` equals the model's pad piece), then calls ``BERTVocab(counter=
  count_tokens(pieces), unknown_token, padding_token, bos_token, eos_token, mask_token,
  sep_token, cls_token, token_to_idx=token_to_idx)``.
- ``src/gluonnlp/vocab/vocab.py`` (dmlc/gluon-nlp @1e08ae64): ``Vocab.__init__`` lays out
  ``[unknown] + special tokens`` (in keyword order: cls, sep, mask, then padding, bos, eos;
  ``None`` and duplicates skipped), appends the counter's keys sorted by (-count, token), and
  finally ``_sort_index_according_to_user_specification`` swaps every piece into its
  SentencePiece id, in id order.

So every piece keeps its SentencePiece id, and special tokens the model lacks end up after the
last piece, in the order those swaps leave them. That order is *not* simply
"[MASK], [SEP], [CLS], bos, eos, padding": it depends on the pieces' sort order and count, so
it is computed here by running the same swaps (`build_vocab`) instead of being assumed.

The tokenizer side (``BERTSPTokenizer`` + ``BERTSentenceTransform``) is
``[CLS] + pieces[:max_len - 2] + [SEP]`` with each piece looked up in the vocabulary (unknown
strings -> the unknown token's id); see `ReferenceTokenizer`.
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from model_export.errors import ExportError, ExportReason

UNKNOWN_TOKEN = "[UNK]"
PADDING_TOKEN = "[PAD]"
MASK_TOKEN = "[MASK]"
SEP_TOKEN = "[SEP]"
CLS_TOKEN = "[CLS]"

# The special-token fields a gluonnlp (BERT)Vocab JSON may carry, top level (older gluonnlp)
# or under "identifiers_to_tokens" (newer).
_SPECIAL_FIELDS = (
    "padding_token",
    "bos_token",
    "eos_token",
    "mask_token",
    "sep_token",
    "cls_token",
)
# BERTVocab's defaults for fields a JSON does not mention.
_BERT_DEFAULTS = {"mask_token": MASK_TOKEN, "sep_token": SEP_TOKEN, "cls_token": CLS_TOKEN}


def _invalid(message: str) -> ExportError:
    return ExportError(ExportReason.TOKENIZER_INVALID, message)


@dataclass(frozen=True)
class GluonVocab:
    """A gluonnlp BERTVocab reduced to what tokenisation needs: the lookup table and specials."""

    idx_to_token: tuple[str, ...]
    token_to_idx: Mapping[str, int]
    unknown_token: str
    padding_token: str | None = None
    bos_token: str | None = None
    eos_token: str | None = None
    mask_token: str | None = None
    sep_token: str | None = None
    cls_token: str | None = None
    reserved_tokens: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.idx_to_token)

    def __getitem__(self, token: str) -> int:
        """gluonnlp's DefaultLookupDict: unknown strings map to the unknown token's id."""
        idx = self.token_to_idx.get(token)
        return self.token_to_idx[self.unknown_token] if idx is None else idx

    def special_id(self, name: str) -> int:
        """Id of a special token by field name ("cls_token", ...); a missing one is an error."""
        token = getattr(self, name)
        if token is None or token not in self.token_to_idx:
            raise _invalid(f"the vocabulary has no {name} (needed for KoBERT inputs)")
        return self.token_to_idx[token]

    @property
    def unk_id(self) -> int:
        return self.token_to_idx[self.unknown_token]


def build_vocab(
    pieces: Sequence[str],
    *,
    unknown_token: str | None,
    padding_token: str | None,
    bos_token: str | None,
    eos_token: str | None,
    mask_token: str | None = MASK_TOKEN,
    sep_token: str | None = SEP_TOKEN,
    cls_token: str | None = CLS_TOKEN,
) -> GluonVocab:
    """gluonnlp ``BERTVocab(counter=count_tokens(pieces), ..., token_to_idx={piece: id})``.

    `pieces` are the SentencePiece pieces in id order; the special tokens are the resolved ones
    (see `vocab_from_sentencepiece`).
    """
    if unknown_token is None:
        raise _invalid("the SentencePiece model defines no unknown piece")
    token_to_idx_spec = {piece: i for i, piece in enumerate(pieces)}
    if len(token_to_idx_spec) != len(pieces):
        raise _invalid("the SentencePiece model has duplicate pieces")
    # Vocab.__init__: kwargs keep call order (cls, sep, mask); padding/bos/eos are added after.
    special_kwargs = (cls_token, sep_token, mask_token, padding_token, bos_token, eos_token)
    idx_to_token: list[str] = [unknown_token]
    specials: list[str] = []
    for token in special_kwargs:
        if token is not None and token not in specials:
            specials.append(token)
    if unknown_token in specials:
        # gluonnlp asserts this for reserved tokens; a special equal to unknown would be
        # indexed twice and corrupt the vocabulary.
        raise _invalid(f"special token {unknown_token!r} is also the unknown token")
    idx_to_token.extend(specials)
    token_to_idx = {token: i for i, token in enumerate(idx_to_token)}
    # _index_counter_keys: every count is 1, so the order is plain string order.
    excluded = {unknown_token, *specials}
    counts = sorted(Counter(token_to_idx_spec).items(), key=lambda kv: kv[0])
    counts.sort(key=lambda kv: kv[1], reverse=True)
    for token, _count in counts:
        if token not in excluded:
            idx_to_token.append(token)
            token_to_idx[token] = len(idx_to_token) - 1
    # _sort_index_according_to_user_specification: swap each piece into its own id, in order.
    for token, new_idx in token_to_idx_spec.items():
        old_idx = token_to_idx[token]
        ousted = idx_to_token[new_idx]
        token_to_idx[token] = new_idx
        token_to_idx[ousted] = old_idx
        idx_to_token[old_idx] = ousted
        idx_to_token[new_idx] = token
    return GluonVocab(
        idx_to_token=tuple(idx_to_token),
        token_to_idx=token_to_idx,
        unknown_token=unknown_token,
        padding_token=padding_token,
        bos_token=bos_token,
        eos_token=eos_token,
        mask_token=mask_token,
        sep_token=sep_token,
        cls_token=cls_token,
        reserved_tokens=tuple(specials),
    )


def vocab_from_sentencepiece(
    processor: Any,
    *,
    padding_token: str | None = PADDING_TOKEN,
    mask_token: str | None = MASK_TOKEN,
    sep_token: str | None = SEP_TOKEN,
    cls_token: str | None = CLS_TOKEN,
) -> GluonVocab:
    """``BERTVocab.from_sentencepiece(path, padding_token="[PAD]")`` on a loaded
    ``sentencepiece.SentencePieceProcessor``."""
    pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]

    def consistent(token_id: int, provided: str | None, name: str) -> str | None:
        if token_id >= 0:
            piece = pieces[token_id]
            if provided and provided != piece:
                # gluonnlp: `assert provided_token == token`
                raise _invalid(
                    f"the SentencePiece model's {name} piece is {piece!r}, but gluonnlp's rule "
                    f"was asked for {provided!r}: this model cannot have been used that way"
                )
            return piece
        return provided

    return build_vocab(
        pieces,
        unknown_token=consistent(processor.unk_id(), None, "unknown"),
        bos_token=consistent(processor.bos_id(), None, "bos"),
        eos_token=consistent(processor.eos_id(), None, "eos"),
        padding_token=consistent(processor.pad_id(), padding_token, "padding"),
        mask_token=mask_token,
        sep_token=sep_token,
        cls_token=cls_token,
    )


def vocab_from_json(path: Path) -> GluonVocab:
    """A saved gluonnlp (BERT)Vocab JSON (``BERTVocab.to_json``): the authority when given.

    Accepts both layouts gluonnlp wrote: special tokens as top-level fields (older releases)
    or under ``identifiers_to_tokens`` (newer). Fields that are absent take BERTVocab's
    defaults. Lookups use ``token_to_idx``; ``idx_to_token`` must agree with it (pre-0.7
    vocabularies may repeat a token in ``idx_to_token``, only the indexed copy counts).
    """
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise _invalid(f"vocab JSON {path} does not exist") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _invalid(f"vocab JSON {path} is not readable JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise _invalid(f"vocab JSON {path} is not a JSON object")
    idx_to_token = raw.get("idx_to_token")
    token_to_idx = raw.get("token_to_idx")
    if not isinstance(idx_to_token, list) or not all(isinstance(t, str) for t in idx_to_token):
        raise _invalid(f"vocab JSON {path}: 'idx_to_token' must be a list of strings")
    if not isinstance(token_to_idx, dict) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in token_to_idx.values()
    ):
        raise _invalid(f"vocab JSON {path}: 'token_to_idx' must map strings to integers")
    if not idx_to_token:
        raise _invalid(f"vocab JSON {path}: the vocabulary is empty")
    for token, idx in token_to_idx.items():
        if not 0 <= idx < len(idx_to_token) or idx_to_token[idx] != token:
            raise _invalid(
                f"vocab JSON {path}: token_to_idx[{token!r}] = {idx} disagrees with idx_to_token"
            )
    if len(set(token_to_idx.values())) != len(token_to_idx):
        raise _invalid(f"vocab JSON {path}: two tokens share an index")
    identifiers = raw.get("identifiers_to_tokens") or {}
    if not isinstance(identifiers, dict):
        raise _invalid(f"vocab JSON {path}: 'identifiers_to_tokens' must be an object")
    specials: dict[str, str | None] = {}
    for name in _SPECIAL_FIELDS:
        if name in raw and name in identifiers:
            raise _invalid(f"vocab JSON {path}: {name} is given twice")
        value = raw[name] if name in raw else identifiers.get(name, _BERT_DEFAULTS.get(name))
        if value is not None and not isinstance(value, str):
            raise _invalid(f"vocab JSON {path}: {name} must be a string or null")
        specials[name] = value
    unknown_token = raw.get("unknown_token")
    if not isinstance(unknown_token, str) or unknown_token not in token_to_idx:
        raise _invalid(f"vocab JSON {path}: 'unknown_token' is missing or not in the vocabulary")
    for name, value in specials.items():
        if value is not None and value not in token_to_idx:
            raise _invalid(f"vocab JSON {path}: {name} {value!r} is not in token_to_idx")
    reserved = raw.get("reserved_tokens") or []
    return GluonVocab(
        idx_to_token=tuple(idx_to_token),
        token_to_idx=dict(token_to_idx),
        unknown_token=unknown_token,
        reserved_tokens=tuple(t for t in reserved if isinstance(t, str)),
        **specials,
    )


def load_processor(spm_model: Path) -> Any:
    """A ``sentencepiece.SentencePieceProcessor`` for the file, or TOKENIZER_INVALID."""
    import sentencepiece as spm

    path = Path(spm_model)
    if not path.is_file():
        raise _invalid(f"SentencePiece model {path} does not exist")
    processor = spm.SentencePieceProcessor()
    try:
        processor.load(str(path))
    except (OSError, RuntimeError) as exc:
        raise _invalid(f"{path} is not a loadable SentencePiece model: {exc}") from exc
    return processor


def load_vocab(spm_model: Path, vocab_json: Path | None = None) -> GluonVocab:
    """The KoBERT vocabulary: the vocab JSON when given, else gluonnlp's rule on the model."""
    if vocab_json is not None:
        return vocab_from_json(vocab_json)
    return vocab_from_sentencepiece(load_processor(spm_model))


def bert_basic_tokenize(text: str) -> list[str]:
    """gluonnlp's ``BERTBasicTokenizer(lower=False)`` (data/transforms.py, dmlc/gluon-nlp
    @c42b2497): drop NUL, U+FFFD and control characters, map whitespace to spaces, put spaces
    around CJK ideographs, split on whitespace, then split every punctuation character off."""

    def is_control(ch: str) -> bool:
        return ch not in "\t\n\r" and unicodedata.category(ch).startswith("C")

    def is_whitespace(ch: str) -> bool:
        return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"

    def is_cjk(cp: int) -> bool:
        return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)

    def is_punctuation(ch: str) -> bool:
        cp = ord(ch)
        if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
            return True
        return unicodedata.category(ch).startswith("P")

    cleaned = []
    for ch in text:
        if ord(ch) in (0, 0xFFFD) or is_control(ch):
            continue
        if is_whitespace(ch):
            cleaned.append(" ")
        elif is_cjk(ord(ch)):
            cleaned.append(f" {ch} ")
        else:
            cleaned.append(ch)
    tokens: list[str] = []
    for word in "".join(cleaned).strip().split():
        current = ""
        for ch in word:
            if is_punctuation(ch):
                if current:
                    tokens.append(current)
                tokens.append(ch)
                current = ""
            else:
                current += ch
        if current:
            tokens.append(current)
    return tokens


_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


class ReferenceTokenizer:
    """gluonnlp's path: SentencePiece ``encode_as_pieces`` -> vocabulary lookup -> [CLS]/[SEP].

    SentencePiece applies its own normaliser (the model's ``normalizer_spec``: nmt_nfkc by
    default, whitespace collapsed, dummy prefix); no lower-casing. This is the path
    docs/REFERENCE_MODEL.md specifies and `model_export.tokenizer` reproduces.

    ``bert_basic=True`` instead runs gluonnlp's ``BERTSPTokenizer`` as its source reads: it
    inherits ``BERTTokenizer._tokenizer``, which first applies `bert_basic_tokenize` and then
    SentencePiece to every basic token separately (each gets its own ``▁``). Whether KoBERT's
    fine-tuning code went through that class decides which path a checkpoint expects; the
    two differ around punctuation and CJK characters (docs/DECISIONS.md, "Tokenizer rules").
    """

    def __init__(
        self, spm_model: Path, vocab_json: Path | None = None, *, bert_basic: bool = False
    ) -> None:
        self.bert_basic = bert_basic
        self.processor = load_processor(spm_model)
        self.vocab = (
            vocab_from_json(vocab_json)
            if vocab_json is not None
            else vocab_from_sentencepiece(self.processor)
        )
        self.cls_id = self.vocab.special_id("cls_token")
        self.sep_id = self.vocab.special_id("sep_token")

    def pieces(self, text: str) -> list[str]:
        if self.bert_basic:
            return [
                piece
                for token in bert_basic_tokenize(text)
                for piece in self.processor.encode_as_pieces(token)
            ]
        return list(self.processor.encode_as_pieces(text))

    def encode(self, text: str, *, max_len: int = 60) -> list[int]:
        """[CLS] + ids(pieces[:max_len - 2]) + [SEP], as BERTSentenceTransform (pair=False)."""
        if max_len < 3:
            raise ValueError("max_len must leave room for [CLS], one piece and [SEP]")
        pieces = self.pieces(text)[: max_len - 2]
        return [self.cls_id, *(self.vocab[p] for p in pieces), self.sep_id]


@lru_cache(maxsize=16)
def _cached_reference(
    spm_model: str, vocab_json: str | None, bert_basic: bool, _stamp: tuple[int, ...]
) -> ReferenceTokenizer:
    return ReferenceTokenizer(
        Path(spm_model), Path(vocab_json) if vocab_json else None, bert_basic=bert_basic
    )


def reference_tokenizer(
    spm_model: Path, vocab_json: Path | None = None, *, bert_basic: bool = False
) -> ReferenceTokenizer:
    """A cached ReferenceTokenizer (reloaded when either file changes)."""

    def stamp(p: Path) -> tuple[int, int]:
        st = p.stat()
        return (st.st_mtime_ns, st.st_size)

    model = Path(spm_model)
    if not model.is_file():
        raise _invalid(f"SentencePiece model {model} does not exist")
    parts: tuple[int, ...] = stamp(model)
    if vocab_json is not None and Path(vocab_json).is_file():
        parts += stamp(Path(vocab_json))
    return _cached_reference(str(model), str(vocab_json) if vocab_json else None, bert_basic, parts)
