"""KoBERT input encoding at run time: the bundle's tokenizer.json -> input ids (no SentencePiece).

The tokenizer.json comes from `model_export.tokenizer.convert_tokenizer`, which proves it gives
the ids KoBERT was trained with (SentencePiece pieces, gluonnlp ids, ``[CLS] … [SEP]``,
truncation to ``max_len``). Sequences are not padded: only ``[CLS]`` feeds the pooler and the
attention mask covers exactly the real tokens, so padded and unpadded inference agree.
`tokenizers` and numpy are imported on first use, so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alertfusion.errors import BundleError, ReasonCode, TextError

if TYPE_CHECKING:
    import numpy as np

#: names of the three KoBERT inputs, in the order `EncodedText.feeds` returns them
INPUT_NAMES: tuple[str, str, str] = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class EncodedText:
    """One text as model inputs: int64 arrays of shape (1, n_tokens)."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray

    @property
    def n_tokens(self) -> int:
        """Tokens including [CLS] and [SEP]."""
        return int(self.input_ids.shape[1])

    def feeds(self) -> dict[str, np.ndarray]:
        """The arrays keyed by the conventional BERT input names (INPUT_NAMES)."""
        arrays = (self.input_ids, self.attention_mask, self.token_type_ids)
        return dict(zip(INPUT_NAMES, arrays, strict=True))


class TextEncoder:
    """Encodes transcripts for the text model; build one per bundle and reuse it."""

    def __init__(self, tokenizer: Any, *, max_len: int) -> None:
        if max_len < 3:
            raise ValueError("max_len must leave room for [CLS], one token and [SEP]")
        # The manifest's max_len is the authority, whatever the file was saved with.
        tokenizer.enable_truncation(max_length=max_len)
        tokenizer.no_padding()
        probe = tokenizer.encode("a")
        if sum(probe.special_tokens_mask) != 2 or probe.special_tokens_mask[0] != 1:
            raise BundleError(
                "tokenizer.json does not add [CLS] and [SEP] around the text "
                "(no BERT post-processor); rebuild the bundle with model_export"
            )
        self._tokenizer = tokenizer
        self.max_len = max_len
        self.cls_id: int = probe.ids[0]
        self.sep_id: int = probe.ids[-1]

    @classmethod
    def from_file(cls, path: Path, *, max_len: int) -> TextEncoder:
        """Load a tokenizer.json; a missing or unreadable file is a BUNDLE_INVALID error."""
        from tokenizers import Tokenizer

        path = Path(path)
        if not path.is_file():
            raise BundleError(f"tokenizer file {path.name} is missing from the bundle")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception for any parse error
            raise BundleError(
                f"{path.name} is not a valid tokenizers file: {exc}",
                code=ReasonCode.BUNDLE_INVALID,
            ) from exc
        return cls(tokenizer, max_len=max_len)

    @property
    def vocab_size(self) -> int:
        return int(self._tokenizer.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str | None) -> EncodedText | None:
        """The model inputs for `text`, truncated to `max_len` tokens; None when there is no
        text: None, empty, whitespace only, or nothing the normaliser keeps (e.g. only
        zero-width characters), so the caller can skip the text model instead of scoring an
        empty [CLS] [SEP].

        One text through `encode_batch`: tokenizers' batch call releases the GIL while it
        works, its single-text `encode` does not, and the engine tokenizes on its worker thread
        while the calling thread decodes audio (with `encode` the decoding would wait for it).
        TOKENIZERS_PARALLELISM=false (the engine's default) keeps a one-text batch on the
        calling thread."""
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str | None]) -> list[EncodedText | None]:
        """`encode` for several texts at once (one call into tokenizers for the non-empty)."""
        out: list[EncodedText | None] = [None] * len(texts)
        todo = []
        for i, text in enumerate(texts):
            if text is None:
                continue
            self.check(text)
            if text and not text.isspace():
                todo.append(i)
        if todo:
            encodings = self._tokenizer.encode_batch([texts[i] for i in todo])
            for i, encoding in zip(todo, encodings, strict=True):
                out[i] = self._arrays(encoding)
        return out

    @staticmethod
    def check(text: object) -> None:
        """Raise TextError unless `text` is a str of valid Unicode (what `encode` needs)."""
        if not isinstance(text, str):
            raise TextError(f"text must be a string, not {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            # Lone surrogates (e.g. from a JSON "\ud800" escape) are not text.
            raise TextError(
                f"text is not valid Unicode (unpaired surrogate at {exc.start})",
                code=ReasonCode.INVALID_INPUT,
            ) from exc

    @staticmethod
    def _arrays(encoding: Any) -> EncodedText | None:
        import numpy as np

        if not any(mask == 0 for mask in encoding.special_tokens_mask):
            return None  # only [CLS] [SEP]: the normaliser removed everything
        return EncodedText(
            input_ids=np.asarray([encoding.ids], dtype=np.int64),
            attention_mask=np.asarray([encoding.attention_mask], dtype=np.int64),
            token_type_ids=np.asarray([encoding.type_ids], dtype=np.int64),
        )
