"""Whisper-family speech-to-text at runtime: greedy decoding of the exported encoder and
decoder-with-cache ONNX pair (model_export.whisper) in numpy, 30 s chunks, ids to text.

The encoder runs once per 30 s chunk and gives every decoder layer's cross-attention keys
and values; the decoder step takes the new tokens and the self-attention cache of the tokens
before them and returns the logits and the extended cache, so each generated token costs one
step over one token. Decoding starts from the prompt (start of transcript, the language token,
transcribe, no timestamps), takes the top token until the end token or `max_new` tokens (the
runaway guard). Recordings over 30 s are cut into chunks that overlap by `overlap_s`; the
texts of consecutive chunks are joined where the longest run of tokens ending one begins the
next (nothing is dropped when none does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

CHUNK_SECONDS = 30.0


@dataclass(frozen=True)
class WhisperSessions:
    """ONNX Runtime sessions of the encoder and the decoder step."""

    encoder: Any
    decoder: Any

    @property
    def layers(self) -> int:
        return sum(1 for i in self.decoder.get_inputs() if i.name.startswith("self_k_"))


def greedy(
    sessions: WhisperSessions, features: np.ndarray, prompt: list[int], end: int, max_new: int
) -> list[int]:
    """Greedy token ids for one chunk's (1, 80, 3000) log-mel features (prompt and end token
    excluded), at most `max_new`."""
    import numpy as np

    n = sessions.layers
    cross = sessions.encoder.run(None, {"input_features": features.astype(np.float32)})
    cross_names = [o.name for o in sessions.encoder.get_outputs()]
    feeds: dict[str, np.ndarray] = dict(zip(cross_names, cross, strict=True))
    heads, dim = cross[0].shape[1], cross[0].shape[3]
    for kv in "kv":
        for i in range(n):
            feeds[f"self_{kv}_{i}"] = np.zeros((1, heads, 0, dim), dtype=np.float32)
    ids = np.asarray([prompt], dtype=np.int64)
    out: list[int] = []
    for _ in range(max_new):
        feeds["input_ids"] = ids
        logits, *present = sessions.decoder.run(None, feeds)
        best = int(np.argmax(logits[0, -1]))
        if best == end:
            break
        out.append(best)
        for j, kv in enumerate("kv"):
            for i in range(n):
                feeds[f"self_{kv}_{i}"] = present[j * n + i]
        ids = np.asarray([[best]], dtype=np.int64)
    return out


def step_logits(sessions: WhisperSessions, features: np.ndarray, ids: list[int]) -> np.ndarray:
    """The decoder's logits at every position of `ids` in one call (teacher forced, an empty
    cache): row j scores the token after ids[j]. (len(ids), vocabulary) float64. The build's
    int8 agreement and the self-check's golden row compare these."""
    import numpy as np

    n = sessions.layers
    cross = sessions.encoder.run(None, {"input_features": features.astype(np.float32)})
    feeds: dict[str, np.ndarray] = {
        o.name: x for o, x in zip(sessions.encoder.get_outputs(), cross, strict=True)
    }
    heads, dim = cross[0].shape[1], cross[0].shape[3]
    for kv in "kv":
        for i in range(n):
            feeds[f"self_{kv}_{i}"] = np.zeros((1, heads, 0, dim), dtype=np.float32)
    feeds["input_ids"] = np.asarray([ids], dtype=np.int64)
    logits = sessions.decoder.run(["logits"], feeds)[0]
    return np.asarray(logits[0], dtype=np.float64)


def chunks(n_samples: int, rate: int, overlap_s: float) -> list[tuple[int, int]]:
    """30 s spans covering `n_samples`, consecutive ones overlapping by `overlap_s`."""
    size = round(CHUNK_SECONDS * rate)
    step = max(1, size - round(overlap_s * rate))
    spans = []
    start = 0
    while True:
        spans.append((start, min(start + size, n_samples)))
        if start + size >= n_samples:
            return spans
        start += step


def merge(parts: list[list[int]], min_overlap: int = 2) -> list[int]:
    """Consecutive chunks' ids joined: the longest run (at least `min_overlap` tokens) that
    ends one chunk and begins the next is kept once."""
    out: list[int] = []
    for part in parts:
        best = 0
        for k in range(min(len(out), len(part)), min_overlap - 1, -1):
            if out[len(out) - k :] == part[:k]:
                best = k
                break
        out.extend(part[best:])
    return out
