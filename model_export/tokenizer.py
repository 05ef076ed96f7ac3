"""KoBERT's SentencePiece model (+ optional gluonnlp vocab JSON) -> one `tokenizers` tokenizer.json.

The runtime has no SentencePiece and no gluonnlp: it loads the tokenizer.json written here
with the `tokenizers` library. The conversion reproduces the reference path
(`model_export.spm_vocab.ReferenceTokenizer`: SentencePiece ``encode_as_pieces`` -> gluonnlp
ids -> ``[CLS] pieces[:max_len-2] [SEP]``) piece for piece:

- **Model**: a `Unigram` whose entry *i* is the token with id *i* in the gluonnlp vocabulary
  (the JSON when given, else gluonnlp's rule), carrying its SentencePiece score. Ids that
  SentencePiece never outputs as a piece (unknown, control and unused pieces, and special
  tokens gluonnlp appended) get an entry whose name contains a space: every space becomes
  ``▁`` before the model runs, so the model can never match them, just as SentencePiece keeps
  them out of its lattice (literal "[CLS]" in a text is not [CLS]). Consecutive unknown
  characters fuse into one unknown token, as in SentencePiece. User-defined pieces get
  SentencePiece's lattice score (``len(piece in bytes) * max_score - 0.1``).
- **Normaliser**: the model's own ``precompiled_charsmap`` (nmt_nfkc for KoBERT) through
  ``normalizers.Precompiled``, then SentencePiece's whitespace rules (runs of spaces
  collapsed, leading and trailing ones removed, dummy ``▁`` prefix, spaces -> ``▁``).
  Precompiled looks characters up per grapheme cluster, SentencePiece by longest prefix;
  three steps before it close the gap: compatibility and half-width jamo mapped to
  conjoining jamo and NFC (so NFD-decomposed Hangul and "ㅋ" + "ㅠ" compose to syllables
  as SentencePiece composes them, while a character the charsmap deletes fences off
  precomposed syllables, which SentencePiece never extends), and that deleted character
  (U+007F for the nmt_* rules) inserted before combining marks, joiners and LF-after-CR
  (Precompiled would replace such a short cluster by the mapping of its first character
  and drop the rest).
- **Post-processing**: ``[CLS] $A [SEP]`` by id, truncation to ``max_len`` tokens in total.

`Pipeline` "bert_sp" reproduces gluonnlp's ``BERTSPTokenizer`` instead (BERT basic
tokenisation before SentencePiece, see `model_export.spm_vocab.ReferenceTokenizer`): the
same steps preceded by BertNormalizer and spaces around punctuation, and a Metaspace
pre-tokenizer that gives every basic token its own ``▁``.

Known differences, measured (README, tests/export/tokenizer): SentencePiece adds path scores
in float32, so when two segmentations score *exactly* the same (``.`` + ``..`` vs ``..`` +
``.``) its rounding picks one and `tokenizers` (float64) possibly the other —
`check_against_reference` proves each such case is an exact tie; and two exotic
normalisation cases: combining marks in non-canonical order (NFC reorders them) and a
compatibility character followed by a combining mark that NFKC would compose (``ｏ`` +
U+0341). Texts made of Korean, Latin, digits, punctuation, whitespace and emoji normalise
identically.

Only what KoBERT needs is supported — a unigram model (KoBERT's, SKTBrain/KoBERT#83) with an
nmt_nfkc(-like) or identity normaliser, whitespace escaped as a prefix, no byte fallback;
anything else is refused with TOKENIZER_INVALID rather than converted approximately.
"""

from __future__ import annotations

import io
import itertools
import string
import struct
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from model_export.errors import ExportError, ExportReason
from model_export.spm_vocab import (
    GluonVocab,
    reference_tokenizer,
    vocab_from_json,
    vocab_from_sentencepiece,
)

DEFAULT_MAX_LEN = 60
SPACE_SYMBOL = "\u2581"  # ▁

#: How text becomes pieces before the ids:
#: "sentencepiece" — SentencePiece on the whole text (docs/REFERENCE_MODEL.md);
#: "bert_sp" — gluonnlp's BERTSPTokenizer: BERT basic tokenisation (controls dropped,
#: whitespace and punctuation split, CJK isolated), then SentencePiece on every basic token,
#: as KoBERT's own fine-tuning notebook (SKTBrain/KoBERT scripts/NSMC) tokenised.
Pipeline = Literal["sentencepiece", "bert_sp"]
PIPELINES: tuple[str, ...] = ("sentencepiece", "bert_sp")

# sentencepiece_model.proto: SentencePiece.Type and TrainerSpec.ModelType
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6
_UNIGRAM = 1
_MODEL_TYPES = {1: "unigram", 2: "bpe", 3: "word", 4: "char"}
# Normalisation rules proved exact: the NFKC-based ones that also delete control characters
# (see `_deleted_char`), and the no-op one. Plain "nfkc"/"nfkc_cf" delete nothing.
_NFKC_RULES = frozenset({"nmt_nfkc", "nmt_nfkc_cf"})
_IDENTITY = "identity"
_FLT_MIN = 1.1754943508222875e-38  # SentencePiece starts max_score_ at FLT_MIN
# Where a grapheme cluster would join characters SentencePiece maps one by one: before a
# combining mark or a zero-width (non-)joiner, between CR and LF, after a prepended format
# character. A deleted character there splits the cluster for normalizers.Precompiled.
# A zero-width insertion at offset 0 corrupts tokenizers' alignments (a later NFC panics,
# Precompiled keeps the character): every insertion pattern starts with this.
_NOT_AT_START = r"(?<=[\x{0}-\x{10FFFF}])"
# Hangul jamo in any form (conjoining, compatibility, half-width, extended) right after a
# precomposed syllable: SentencePiece's charsmap never composes across that boundary
# ("가" + "ᆨ" stays two characters), NFC would.
_JAMO_AFTER_SYLLABLE = (
    r"(?<=[\x{AC00}-\x{D7A3}])"
    r"(?=[\x{1100}-\x{11FF}\x{3131}-\x{318E}\x{FFA0}-\x{FFDC}\x{A960}-\x{A97F}\x{D7B0}-\x{D7FF}])"
)
# gluonnlp's BERTBasicTokenizer._is_punctuation: ASCII non-alphanumerics and Unicode P*.
_BERT_PUNCTUATION = r"[\x{21}-\x{2F}\x{3A}-\x{40}\x{5B}-\x{60}\x{7B}-\x{7E}\p{P}]"
_CLUSTER_JOINTS = (
    _NOT_AT_START + r"(?=[\p{M}\x{200C}\x{200D}])|(?<=\r)(?=\n)"
    r"|(?<=[\x{0600}-\x{0605}\x{06DD}\x{070F}\x{0890}\x{0891}\x{08E2}\x{0D4E}"
    r"\x{110BD}\x{110CD}\x{111C2}\x{111C3}])"
)


@dataclass(frozen=True)
class TokenizerArtifacts:
    """The converted tokenizer and the ids the bundle manifest records."""

    tokenizer_json: str  # a serialized tokenizers.Tokenizer
    vocab_size: int
    cls_id: int
    sep_id: int
    pad_id: int
    unk_id: int
    mask_id: int
    max_len: int
    pipeline: str = "sentencepiece"


def _invalid(message: str) -> ExportError:
    return ExportError(ExportReason.TOKENIZER_INVALID, message)


def read_spm_model(spm_model: Path) -> tuple[Any, Any]:
    """(ModelProto, SentencePieceProcessor) for a SentencePiece model file, validated by both
    the protobuf parser and SentencePiece's own loader; TOKENIZER_INVALID otherwise."""
    import sentencepiece as spm
    from google.protobuf.message import DecodeError
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    path = Path(spm_model)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise _invalid(f"SentencePiece model {path} does not exist") from exc
    except OSError as exc:
        raise _invalid(f"SentencePiece model {path} is not readable: {exc}") from exc
    if not data:
        raise _invalid(f"{path} is empty, not a SentencePiece model")
    proto = model_pb2.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise _invalid(f"{path} is not a SentencePiece model (protobuf: {exc})") from exc
    processor = spm.SentencePieceProcessor()
    try:
        processor.load_from_serialized_proto(data)
    except (RuntimeError, OSError, ValueError) as exc:
        raise _invalid(f"{path} is not a loadable SentencePiece model: {exc}") from exc
    if not proto.pieces or processor.get_piece_size() != len(proto.pieces):
        raise _invalid(f"{path} is not a SentencePiece model (no pieces)")
    # Pieces come first in the file: a truncated model can still parse, without its specs.
    if not (proto.HasField("trainer_spec") and proto.HasField("normalizer_spec")):
        raise _invalid(f"{path} is truncated or incomplete (no trainer/normalizer spec)")
    return proto, processor


def _check_supported(proto: Any, path: Path) -> None:
    trainer, norm = proto.trainer_spec, proto.normalizer_spec
    if trainer.model_type != _UNIGRAM:
        kind = _MODEL_TYPES.get(trainer.model_type, str(trainer.model_type))
        raise _invalid(
            f"{path} is a SentencePiece {kind} model; only unigram models (KoBERT's type) "
            "are converted, because only they are proved exact"
        )
    if trainer.byte_fallback:
        raise _invalid(f"{path} uses byte fallback, which KoBERT does not; not supported")
    if trainer.treat_whitespace_as_suffix or not norm.escape_whitespaces:
        raise _invalid(
            f"{path} does not mark whitespace as a ▁ prefix (treat_whitespace_as_suffix / "
            "escape_whitespaces); not supported"
        )
    name = norm.name or ("user_defined" if norm.precompiled_charsmap else _IDENTITY)
    if name == _IDENTITY and norm.precompiled_charsmap:
        name = "user_defined"
    if name not in _NFKC_RULES and name != _IDENTITY:
        raise _invalid(
            f"{path} uses the {name!r} normalisation rules; supported: "
            f"{', '.join(sorted(_NFKC_RULES | {_IDENTITY}))}"
        )
    if name in _NFKC_RULES and not norm.precompiled_charsmap:
        raise _invalid(f"{path}: normaliser {name!r} has no precompiled charsmap")


class _Charsmap:
    """Exact-match lookups in a SentencePiece precompiled charsmap (a darts-clone double
    array followed by the NUL-separated replacement strings)."""

    def __init__(self, blob: bytes) -> None:
        (trie_size,) = struct.unpack_from("<I", blob, 0)
        self._units = struct.unpack_from(f"<{trie_size // 4}I", blob, 4)
        self._strings = blob[4 + trie_size :]

    @staticmethod
    def _offset(unit: int) -> int:
        return (unit >> 10) << ((unit & (1 << 9)) >> 6)

    def get(self, key: str) -> str | None:
        """The replacement of `key` when `key` itself is a rule, else None (darts-clone's
        exactMatchSearch)."""
        units = self._units
        pos, unit = 0, units[0]
        for byte in key.encode("utf-8"):
            pos ^= self._offset(unit) ^ byte
            if pos >= len(units):
                return None
            unit = units[pos]
            if (unit & ((1 << 31) | 0xFF)) != byte:
                return None
        if not (unit >> 8) & 1:
            return None
        start = units[pos ^ self._offset(unit)] & ((1 << 31) - 1)
        end = self._strings.index(b"\0", start)
        return self._strings[start:end].decode("utf-8", "replace")


def _deleted_char(charsmap: _Charsmap) -> str | None:
    """A control or format character the charsmap maps to nothing (U+007F for the nmt_*
    rules), which is a grapheme cluster of its own."""
    joiners = {"\u200c", "\u200d", "\r", "\n"} | {chr(c) for c in range(0x600, 0x606)}
    candidates = itertools.chain(
        ["\x7f"],
        (
            chr(cp)
            for cp in range(0x110000)
            if unicodedata.category(chr(cp)) in ("Cc", "Cf") and chr(cp) not in joiners
        ),
    )
    for char in candidates:
        if charsmap.get(char) == "":
            return char
    return None


def _jamo_to_conjoining(rules: _Charsmap) -> list[tuple[str, str]]:
    """Compatibility and half-width jamo the charsmap maps to one conjoining jamo."""
    out = []
    for cp in itertools.chain(range(0x3131, 0x318F), range(0xFFA0, 0xFFDD)):
        target = rules.get(chr(cp))
        if target is not None and len(target) == 1 and 0x1100 <= ord(target) <= 0x11FF:
            out.append((chr(cp), target))
    return out


def _normalizer(proto: Any, pipeline: Pipeline) -> Any:
    from tokenizers import Regex, normalizers

    norm = proto.normalizer_spec
    steps: list[Any] = []
    if pipeline == "bert_sp":
        # BERTBasicTokenizer, before SentencePiece sees anything: drop controls (BertNormalizer
        # keeps unassigned code points, Python's unicodedata calls them "Cn" controls), map
        # whitespace to spaces, isolate CJK, then spaces around every punctuation character
        # so that the whitespace split below yields exactly the basic tokens.
        steps.append(
            normalizers.BertNormalizer(
                clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
            )
        )
        steps.append(normalizers.Replace(Regex(r"\p{Cn}"), ""))
        steps.append(normalizers.Replace(Regex(f"{_NOT_AT_START}(?={_BERT_PUNCTUATION})"), " "))
        steps.append(normalizers.Replace(Regex(f"(?<={_BERT_PUNCTUATION})"), " "))
    if norm.precompiled_charsmap:
        charsmap = bytes(norm.precompiled_charsmap)
        rules = _Charsmap(charsmap)
        deleted = _deleted_char(rules)
        if deleted is None:
            raise _invalid(
                f"the {norm.name!r} charsmap deletes no control character, which the exact "
                "conversion needs (to keep Precompiled from merging combining marks); "
                "use nmt_nfkc (KoBERT's), nmt_nfkc_cf or identity"
            )
        # SentencePiece composes jamo sequences in any mix of forms ("ㅋㅠ" -> "큐") by
        # longest match, but never onto a precomposed syllable; NFC composes only conjoining
        # jamo, onto anything. So: fence precomposed syllables, map the other jamo forms to
        # conjoining ones exactly as the charsmap does, then compose.
        steps.append(normalizers.Replace(Regex(_JAMO_AFTER_SYLLABLE), deleted))
        steps.extend(normalizers.Replace(src, dst) for src, dst in _jamo_to_conjoining(rules))
        steps.append(normalizers.NFC())
        steps.append(normalizers.Replace(Regex(_CLUSTER_JOINTS), deleted))
        steps.append(normalizers.Precompiled(charsmap))
    if pipeline == "bert_sp":
        # SentencePiece per basic token: each one's leading/trailing spaces go, and the
        # Metaspace pre-tokenizer gives each whitespace-separated piece of text its own ▁.
        steps.append(normalizers.Replace(Regex(" {2,}"), " "))
        steps.append(normalizers.Replace(Regex(r"\A +| +\z"), ""))
        return normalizers.Sequence(steps)
    if norm.remove_extra_whitespaces:
        steps.append(normalizers.Replace(Regex(" {2,}"), " "))
        steps.append(normalizers.Replace(Regex(r"\A "), ""))
    if norm.add_dummy_prefix:
        steps.append(normalizers.Prepend(SPACE_SYMBOL))
    steps.append(normalizers.Replace(" ", SPACE_SYMBOL))
    if norm.remove_extra_whitespaces:
        # SentencePiece strips trailing ▁ after escaping, including literal U+2581 characters.
        steps.append(normalizers.Replace(Regex(SPACE_SYMBOL + r"+\z"), ""))
    return normalizers.Sequence(steps)


def _check_user_defined(proto: Any, normalizer: Any, path: Path) -> None:
    """SentencePiece keeps user-defined pieces out of normalisation; that is only reproduced
    when normalisation leaves them unchanged anyway."""
    for piece in proto.pieces:
        if piece.type != _USER_DEFINED:
            continue
        text = piece.piece
        if not text or any(c.isspace() or c == SPACE_SYMBOL for c in text):
            raise _invalid(f"{path}: user-defined piece {text!r} contains whitespace")
        normalized = normalizer.normalize_str("x" + text)
        expected = (SPACE_SYMBOL if proto.normalizer_spec.add_dummy_prefix else "") + "x" + text
        if normalized != expected:
            raise _invalid(
                f"{path}: user-defined piece {text!r} would be changed by the normaliser; "
                "not supported"
            )


def _unigram_vocab(proto: Any, vocab: GluonVocab, path: Path) -> list[tuple[str, float]]:
    normal_scores = [p.score for p in proto.pieces if p.type == _NORMAL]
    if not normal_scores:
        raise _invalid(f"{path} has no normal pieces")
    min_score = min(normal_scores)
    max_score = max([_FLT_MIN, *normal_scores])
    reachable: dict[str, float] = {}
    for piece in proto.pieces:
        if piece.type == _NORMAL:
            reachable[piece.piece] = float(piece.score)
        elif piece.type == _USER_DEFINED:
            reachable[piece.piece] = len(piece.piece.encode("utf-8")) * max_score - 0.1
    missing = [p for p in reachable if p not in vocab.token_to_idx]
    if missing:
        raise _invalid(
            f"the vocabulary lacks {len(missing)} piece(s) that {path} produces "
            f"(e.g. {missing[:5]!r}): it does not belong to this SentencePiece model"
        )
    entries: list[tuple[str, float]] = []
    taken: set[str] = set()
    for idx, token in enumerate(vocab.idx_to_token):
        if vocab.token_to_idx.get(token) == idx and token in reachable:
            entry = (token, reachable[token])
        else:
            # Contains a space, which never reaches the model (see the module docstring).
            entry = (f"{token} <id {idx}>", min_score)
        if entry[0] in taken:
            raise _invalid(f"duplicate vocabulary entry {entry[0]!r}")
        taken.add(entry[0])
        entries.append(entry)
    return entries


def build_tokenizer(
    spm_model: Path,
    vocab_json: Path | None = None,
    *,
    max_len: int,
    pipeline: Pipeline = "sentencepiece",
) -> tuple[Any, GluonVocab, dict[str, int]]:
    """The `tokenizers.Tokenizer` (see `convert_tokenizer`), the vocabulary it encodes and the
    ids of its cls/sep/padding/mask tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    if max_len < 3:
        raise ValueError("max_len must leave room for [CLS], one piece and [SEP]")
    if pipeline not in PIPELINES:
        raise ValueError(f"pipeline must be one of {PIPELINES}, not {pipeline!r}")
    path = Path(spm_model)
    proto, processor = read_spm_model(path)
    _check_supported(proto, path)
    norm = proto.normalizer_spec
    if pipeline == "bert_sp" and not (norm.add_dummy_prefix and norm.remove_extra_whitespaces):
        raise _invalid(
            f"{path}: the bert_sp pipeline is only supported with SentencePiece's default "
            "whitespace handling (dummy prefix, extra whitespace removed)"
        )
    if vocab_json is not None:
        vocab = vocab_from_json(vocab_json)
    else:
        vocab = vocab_from_sentencepiece(processor)
    ids = {name: vocab.special_id(f"{name}_token") for name in ("cls", "sep", "padding", "mask")}
    _check_user_defined(proto, _normalizer(proto, "sentencepiece"), path)
    tokenizer = Tokenizer(models.Unigram(_unigram_vocab(proto, vocab, path), unk_id=vocab.unk_id))
    tokenizer.normalizer = _normalizer(proto, pipeline)
    if pipeline == "bert_sp":
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
            replacement=SPACE_SYMBOL, prepend_scheme="always", split=True
        )
    assert vocab.cls_token is not None and vocab.sep_token is not None  # special_id checked
    tokenizer.post_processor = processors.TemplateProcessing(
        single=[vocab.cls_token, "$A", vocab.sep_token],
        pair=[vocab.cls_token, "$A", vocab.sep_token, "$B:1", f"{vocab.sep_token}:1"],
        special_tokens=[(vocab.cls_token, ids["cls"]), (vocab.sep_token, ids["sep"])],
    )
    tokenizer.decoder = decoders.Metaspace(
        replacement=SPACE_SYMBOL,
        prepend_scheme="always" if proto.normalizer_spec.add_dummy_prefix else "never",
    )
    tokenizer.enable_truncation(max_length=max_len)
    tokenizer.no_padding()
    return tokenizer, vocab, ids


def convert_tokenizer(
    spm_model: Path,
    vocab_json: Path | None = None,
    *,
    max_len: int = DEFAULT_MAX_LEN,
    pipeline: Pipeline = "sentencepiece",
) -> TokenizerArtifacts:
    """Convert KoBERT's SentencePiece model (and its gluonnlp vocab JSON, the authority when
    given) into a serialized `tokenizers.Tokenizer` that gives the reference path's ids.

    `pipeline` picks the reference path (see `Pipeline`); "sentencepiece" is what
    docs/REFERENCE_MODEL.md specifies.

    Raises ExportError(TOKENIZER_INVALID) for a file that is missing, does not parse, is not a
    (supported) SentencePiece model, or a vocab JSON that is malformed or does not belong to
    the model.
    """
    tokenizer, vocab, ids = build_tokenizer(
        spm_model, vocab_json, max_len=max_len, pipeline=pipeline
    )
    return TokenizerArtifacts(
        tokenizer_json=tokenizer.to_str(),
        vocab_size=len(vocab),
        cls_id=ids["cls"],
        sep_id=ids["sep"],
        pad_id=ids["padding"],
        unk_id=vocab.unk_id,
        mask_id=ids["mask"],
        max_len=max_len,
        pipeline=pipeline,
    )


def reference_encode(
    spm_model: Path,
    vocab_json: Path | None,
    text: str,
    *,
    max_len: int = DEFAULT_MAX_LEN,
    pipeline: Pipeline = "sentencepiece",
) -> list[int]:
    """The reference path, for tests: [CLS] + ids(SentencePiece pieces)[:max_len-2] + [SEP]."""
    reference = reference_tokenizer(Path(spm_model), vocab_json, bert_basic=pipeline == "bert_sp")
    return reference.encode(text, max_len=max_len)


@dataclass(frozen=True)
class ParityReport:
    """tokenizer.json against the reference path on a list of texts."""

    n_texts: int
    #: texts whose ids differ for any reason other than an exact-score tie
    mismatches: tuple[str, ...]
    #: texts whose ids differ only because two segmentations score exactly the same and
    #: SentencePiece's float32 rounding picked the other one
    ties: tuple[str, ...]

    @property
    def exact(self) -> bool:
        return not self.mismatches


def _segmentation_scorer(proto: Any) -> Any:
    """Exact (rational) Viterbi score of a piece sequence, as SentencePiece's lattice sees it."""
    from fractions import Fraction

    normal = [p.score for p in proto.pieces if p.type == _NORMAL]
    max_score = max([_FLT_MIN, *normal])
    table: dict[str, Fraction] = {}
    for piece in proto.pieces:
        if piece.type == _NORMAL:
            table[piece.piece] = Fraction(piece.score)
        elif piece.type == _USER_DEFINED:
            table[piece.piece] = Fraction(len(piece.piece.encode("utf-8")) * max_score) - Fraction(
                1, 10
            )
    unknown = Fraction(min(normal)) - 10

    def score(pieces: list[str]) -> Fraction:
        # An unknown run scores one unknown node per character.
        return sum((table.get(p, unknown * len(p)) for p in pieces), Fraction(0))

    return score


def check_against_reference(
    tokenizer_json: str,
    spm_model: Path,
    vocab_json: Path | None,
    texts: list[str],
    *,
    max_len: int = DEFAULT_MAX_LEN,
    pipeline: Pipeline = "sentencepiece",
) -> ParityReport:
    """Encode every text with the tokenizer.json and with the reference path; classify each
    difference as an exact-score tie (see the module docstring) or a real mismatch."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(tokenizer_json)
    tokenizer.enable_truncation(max_length=max_len)
    untruncated = Tokenizer.from_str(tokenizer_json)
    untruncated.no_truncation()
    reference = reference_tokenizer(Path(spm_model), vocab_json, bert_basic=pipeline == "bert_sp")
    proto, _ = read_spm_model(Path(spm_model))
    score = _segmentation_scorer(proto)
    cls_id, sep_id = reference.cls_id, reference.sep_id
    mismatches: list[str] = []
    ties: list[str] = []
    for text in texts:
        ids = tokenizer.encode(text).ids
        if ids == reference.encode(text, max_len=max_len):
            continue
        ours = untruncated.encode(text, add_special_tokens=False).tokens
        theirs = reference.pieces(text)
        # A tie: another segmentation of the same text with exactly the same score, whose
        # pieces get exactly the ids the vocabulary gives them.
        tie = (
            ours != theirs
            and "".join(ours) == "".join(theirs)
            and score(ours) == score(theirs)
            and ids == [cls_id, *(reference.vocab[p] for p in ours[: max_len - 2]), sep_id]
        )
        (ties if tie else mismatches).append(text)
    return ParityReport(n_texts=len(texts), mismatches=tuple(mismatches), ties=tuple(ties))


# --- demo SentencePiece models ----------------------------------------------------------------

# KoBERT's layout: [UNK]=0, [PAD]=1, [CLS]=2, [SEP]=3, [MASK]=4, no bos/eos.
_KOBERT_SPECIALS: dict[str, Any] = {
    "unk_id": 0,
    "unk_piece": "[UNK]",
    "pad_id": 1,
    "pad_piece": "[PAD]",
    "bos_id": -1,
    "eos_id": -1,
    "control_symbols": ["[CLS]", "[SEP]", "[MASK]"],
}
_PLAIN_SPECIALS: dict[str, Any] = {
    "unk_id": 0,
    "unk_piece": "[UNK]",
    "bos_id": -1,
    "eos_id": -1,
    "pad_id": -1,
}
SPECIAL_TOKEN_TEXTS = ("[UNK]", "[PAD]", "[CLS]", "[SEP]", "[MASK]")
# Below this size the full training corpus (2,350 distinct syllables) cannot fit the vocabulary.
_SMALL_VOCAB = 4_000


def _fit_alphabet(lines: list[str], *, max_chars: int, keep: str) -> list[str]:
    """The lines written only with the `max_chars` most frequent characters (and those of
    `keep`), so that a small vocabulary can hold the whole alphabet (SentencePiece refuses a
    character coverage below 0.98)."""
    counts = Counter(ch for line in lines for ch in line if not ch.isspace())
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    alphabet = set(keep) | {ch for ch, _ in ranked[: max(0, max_chars - len(set(keep)))]}
    return [line for line in lines if all(ch.isspace() or ch in alphabet for ch in line)]


def train_demo_spm(
    out_dir: Path, *, vocab_size: int, seed: int = 0, with_special_pieces: bool = True
) -> Path:
    """Train a deterministic unigram SentencePiece model on the generated Korean corpus.

    Same arguments, same bytes (one thread, no shuffling, fixed seed, no paths inside the
    model). ``with_special_pieces=True`` lays it out like KoBERT's: ``vocab_size`` pieces in
    all with [UNK]=0 (unknown), [PAD]=1 (pad), [CLS]=2, [SEP]=3, [MASK]=4 (control); False
    gives [UNK]=0 only, so gluonnlp's rule appends [CLS]/[SEP]/[MASK]/[PAD] after the last
    piece. Models below 4,000 pieces are trained on a smaller corpus without pseudo-words.
    Returns the written ``.model`` path.
    """
    import sentencepiece as spm

    from model_export.korean_corpus import training_corpus

    specials = _KOBERT_SPECIALS if with_special_pieces else _PLAIN_SPECIALS
    if vocab_size >= _SMALL_VOCAB:
        lines, coverage = training_corpus(seed=seed), 0.9995
    else:
        corpus = training_corpus(seed=seed, rich=vocab_size >= 1_000)
        # The special tokens' characters stay known: in a model that knows none of them, the
        # text "[CLS]" is one unknown run that gluonnlp would map to [CLS]'s id (see
        # `unknown_run_tokens`), which the demo models should not exhibit.
        keep = "".join(sorted(set("".join(SPECIAL_TOKEN_TEXTS)) | set(string.ascii_uppercase)))
        lines, coverage = _fit_alphabet(corpus, max_chars=vocab_size // 2, keep=keep), 1.0
    buffer = io.BytesIO()
    spm.set_random_generator_seed(seed)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=buffer,
            model_type="unigram",
            vocab_size=vocab_size,
            character_coverage=coverage,
            num_threads=1,
            shuffle_input_sentence=False,
            input_sentence_size=0,
            normalization_rule_name="nmt_nfkc",
            minloglevel=2,
            **specials,
        )
    except RuntimeError as exc:
        raise ValueError(f"cannot train a {vocab_size}-piece demo model: {exc}") from exc
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kind = "kobert" if with_special_pieces else "plain"
    path = out / f"demo-{kind}-v{vocab_size}-s{seed}.model"
    path.write_bytes(buffer.getvalue())
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m model_export.tokenizer check MODEL [--vocab-json J] [--pipeline P]``: convert
    and compare against the reference path on the generated test corpus (exit 1 on any
    mismatch). ``--demo`` checks freshly trained demo models instead of MODEL."""
    import argparse
    import tempfile
    import time

    from model_export.korean_corpus import evaluation_corpus

    parser = argparse.ArgumentParser(prog="python -m model_export.tokenizer")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="prove a conversion on the generated Korean corpus")
    check.add_argument("spm_model", type=Path, nargs="?")
    check.add_argument("--vocab-json", type=Path)
    check.add_argument("--pipeline", choices=PIPELINES, default="sentencepiece")
    check.add_argument("--max-len", type=int, default=DEFAULT_MAX_LEN)
    check.add_argument("--sentences", type=int, default=1_200)
    check.add_argument("--demo", action="store_true", help="train and check the demo models")
    args = parser.parse_args(argv)
    corpus = evaluation_corpus(args.sentences)
    with tempfile.TemporaryDirectory() as tmp:
        if args.demo:
            models = [
                train_demo_spm(Path(tmp), vocab_size=8_002),
                train_demo_spm(Path(tmp), vocab_size=1_000, with_special_pieces=False),
                train_demo_spm(Path(tmp), vocab_size=300),
            ]
        elif args.spm_model is not None:
            models = [args.spm_model]
        else:
            parser.error("give a SentencePiece model or --demo")
        failed = False
        for model in models:
            try:
                started = time.perf_counter()
                artifacts = convert_tokenizer(
                    model, args.vocab_json, max_len=args.max_len, pipeline=args.pipeline
                )
                report = check_against_reference(
                    artifacts.tokenizer_json,
                    model,
                    args.vocab_json,
                    corpus,
                    max_len=args.max_len,
                    pipeline=args.pipeline,
                )
            except ExportError as exc:
                print(f"{model.name}: {exc}")
                return 2
            seconds = time.perf_counter() - started
            failed |= not report.exact
            print(
                f"{model.name} [{args.pipeline}, vocab {artifacts.vocab_size}]: "
                f"{report.n_texts} texts, {len(report.mismatches)} mismatches, "
                f"{len(report.ties)} float32 ties, {seconds:.2f} s"
            )
            for text in report.mismatches[:5]:
                print(f"  mismatch: {text[:80]!r}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
