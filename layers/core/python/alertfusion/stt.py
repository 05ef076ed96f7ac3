"""Speech-to-text inside the bundle: a recipe's `transcribe` model (CTC family) in numpy.

The model's input is a feature node of the recipe computed on the whole recording (not per
window: CTC reads a sequence of any length); its output is per-frame logits over the
bundle's alphabet, [1, frames, symbols]. Greedy decoding takes each frame's top symbol,
merges repeats and drops the blank; beam decoding (`decoding: "beam"`) is a CTC prefix beam
search, which sums the probability of every path that gives the same text; at most
`max_tokens_per_second` tokens per second of audio are kept (a guard against a model that
emits a symbol on every frame). Silence gives an empty transcript, never an error.

The alphabet is a JSON file of the bundle, {"symbols": ["_", " ", "가", ...]}, listed in the
manifest with its sha256 and symbol count; a count that does not match the file or the
model's output width is refused (BUNDLE_INVALID) when the bundle loads.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alertfusion.errors import AlertFusionError, BundleError, ReasonCode

if TYPE_CHECKING:
    import numpy as np

    from alertfusion.engine.core import Engine
    from alertfusion.manifest_v2 import ManifestV2
    from alertfusion.recipe.schema import Transcription


def read_alphabet(path: Path, expected: int | None = None) -> list[str]:
    """The symbols of an alphabet file; BUNDLE_INVALID naming the file when it is not a JSON
    object with a list of unique strings, or holds a count other than `expected`."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"alphabet {path.name}: not readable JSON ({exc})") from exc
    symbols = raw.get("symbols") if isinstance(raw, dict) else None
    if not isinstance(symbols, list) or not all(isinstance(x, str) and x for x in symbols):
        raise BundleError(f"alphabet {path.name}: needs {{'symbols': [non-empty strings]}}")
    if len(set(symbols)) != len(symbols):
        raise BundleError(f"alphabet {path.name}: a symbol is listed twice")
    if expected is not None and len(symbols) != expected:
        raise BundleError(
            f"alphabet {path.name} has {len(symbols)} symbols; the manifest (and the model's "
            f"output width) says {expected}"
        )
    return symbols


def read_tokenizer(path: Path, expected: int | None, language: str) -> Any:
    """A whisper model's tokenizer.json (`tokenizers`): BUNDLE_INVALID naming the file when it
    cannot be read, its vocabulary is not `expected` tokens, or a prompt token is missing."""
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises its own exception type
        raise BundleError(f"tokenizer {path.name}: not a readable tokenizer.json ({exc})") from exc
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    if expected is not None and size != expected:
        raise BundleError(
            f"tokenizer {path.name} has {size} tokens; the manifest (and the decoder's output "
            f"width) says {expected}"
        )
    missing = [t for t in whisper_specials(language) if tokenizer.token_to_id(t) is None]
    if missing:
        raise BundleError(f"tokenizer {path.name} lacks the tokens {missing}")
    return tokenizer


def checkpoint_key(name: str) -> str:
    """The manifest's producer note naming transcribe model `name`'s trained checkpoint
    (written by `python -m model_export transcriber`; a demo's seeded model has none)."""
    return f"{name}_checkpoint"


def whisper_specials(language: str) -> tuple[str, ...]:
    """The prompt (start, language, transcribe, no timestamps) and the end token."""
    return ("<|startoftranscript|>", f"<|{language}|>", "<|transcribe|>", "<|notimestamps|>",
            "<|endoftext|>")  # fmt: skip


def check_alphabets(directory: Path, spec: ManifestV2) -> None:
    """Every transcribe model's alphabet (or tokenizer) file against its manifest entry."""
    for name, entry in spec.models.items():
        transcription = spec.recipe.models[name].transcription
        if entry.alphabet is None or transcription is None:
            continue
        path = directory / entry.alphabet.file
        if transcription.family == "whisper":
            read_tokenizer(path, entry.alphabet.symbols, transcription.language)
        else:
            read_alphabet(path, entry.alphabet.symbols)


def ctc_greedy(logits: np.ndarray, blank: int) -> list[int]:
    """Greedy CTC over (frames, symbols) logits: each frame's argmax, repeats merged, blanks
    dropped (a repeat separated by a blank counts twice)."""
    import numpy as np

    if logits.ndim != 2:
        raise ValueError(f"CTC logits are (frames, symbols), not {logits.shape}")
    best = np.asarray(logits).argmax(axis=1)
    if best.size == 0:
        return []
    keep = np.ones(best.size, dtype=bool)
    keep[1:] = best[1:] != best[:-1]
    return [int(i) for i in best[keep & (best != blank)]]


def ctc_beam(logits: np.ndarray, blank: int, width: int) -> list[int]:
    """CTC prefix beam search over (frames, symbols) logits, no language model: the `width`
    most probable prefixes are kept after each frame, each prefix's probability summed over
    every path that collapses to it (paths ending in a blank apart from the others, so that a
    repeat separated by a blank counts twice). Each frame extends the prefixes with its
    `width` most probable symbols only. Returns the most probable prefix."""
    import numpy as np

    if logits.ndim != 2:
        raise ValueError(f"CTC logits are (frames, symbols), not {logits.shape}")
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=1, keepdims=True)
    logp = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    add = np.logaddexp
    none = -np.inf
    # prefix -> (log p of its paths ending in a blank, log p of those ending in a symbol)
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, none)}
    k = min(width, logp.shape[1])
    for row in logp:
        top = np.argpartition(-row, k - 1)[:k]
        grown: dict[tuple[int, ...], tuple[float, float]] = {}
        for prefix, (p_blank, p_symbol) in beams.items():
            total = add(p_blank, p_symbol)
            last = prefix[-1] if prefix else None
            # the same prefix: a blank, or its last symbol repeated (merged)
            b, s_ = grown.get(prefix, (none, none))
            b = add(b, total + row[blank])
            if last is not None:
                s_ = add(s_, p_symbol + row[last])
            grown[prefix] = (b, s_)
            for symbol in top:
                symbol = int(symbol)
                if symbol == blank:
                    continue
                longer = (*prefix, symbol)
                b, s_ = grown.get(longer, (none, none))
                # after the same symbol, only a path through a blank starts a new one
                s_ = add(s_, (p_blank if symbol == last else total) + row[symbol])
                grown[longer] = (b, s_)
        ranked = sorted(grown.items(), key=lambda item: add(*item[1]), reverse=True)
        beams = dict(ranked[:width])
    best = max(beams.items(), key=lambda item: add(*item[1]))[0]
    return list(best)


def decode_ctc(logits: np.ndarray, transcription: Transcription) -> list[int]:
    """The token ids of a CTC model's (frames, symbols) logits, by the recipe's decoding."""
    if transcription.decoding == "beam":
        return ctc_beam(logits, transcription.blank, transcription.beam_width)
    return ctc_greedy(logits, transcription.blank)


def ids_to_text(ids: list[int], symbols: list[str]) -> str:
    """The symbols joined, runs of whitespace as one space, trimmed."""
    return " ".join("".join(symbols[i] for i in ids).split())


@dataclass(frozen=True)
class Transcript:
    text: str
    model: str
    #: token ids after decoding (and the runaway cut)
    ids: tuple[int, ...]
    ms: float
    #: what the max_tokens_per_second guard stopped: tokens dropped (CTC), chunks whose
    #: generation it ended (whisper)
    cut: int = 0

    @property
    def n_tokens(self) -> int:
        return len(self.ids)


class Transcriber:
    """The recipe's transcribe model `name` of an engine's bundle (thread-safe)."""

    def __init__(self, engine: Engine, name: str) -> None:
        spec = engine.spec.recipe.models[name]
        entry = engine.spec.models[name]
        if spec.task != "transcribe" or spec.transcription is None or entry.alphabet is None:
            raise BundleError(f"model {name} of this bundle does not transcribe")
        self.engine = engine
        self.name = name
        self.spec = spec
        self.transcription = spec.transcription
        ((self.input_name, self.feed),) = spec.inputs.items()
        self.whisper: _Whisper | None = None
        self.symbols: list[str] = []
        path = engine.bundle.path(entry.alphabet.file)
        if self.transcription.family == "whisper":
            self.whisper = _Whisper(engine, name, path, self.transcription.language)
        else:
            self.symbols = read_alphabet(path, entry.alphabet.symbols)

    def features(self, samples: np.ndarray) -> np.ndarray:
        """The model's input for some samples, batch axis first."""
        import numpy as np

        from alertfusion.recipe.graph import layout

        values = self.engine.feature_graph().run(samples, {self.feed.node})
        return np.ascontiguousarray(
            layout(values[self.feed.node], self.feed.layout)[np.newaxis], np.float32
        )

    def logits(self, samples: np.ndarray) -> np.ndarray:
        """The CTC model's (frames, symbols) logits for a whole recording's samples."""
        import numpy as np

        feed = self.features(samples)
        out = self.engine.sessions.run(self.name, {self.input_name: feed})
        if out.ndim != 3 or out.shape[0] != 1 or out.shape[2] != len(self.symbols):
            raise AlertFusionError(
                f"the {self.name} model returned output of shape {tuple(out.shape)}, expected "
                f"(1, frames, {len(self.symbols)})",
                code=ReasonCode.INTERNAL,
            )
        if not np.isfinite(out).all():
            raise AlertFusionError(
                f"the {self.name} model returned non-finite logits", code=ReasonCode.INTERNAL
            )
        return np.asarray(out[0])

    def transcribe(self, samples: np.ndarray) -> Transcript:
        """A whole recording's samples (at the recipe's rate) -> its transcript."""
        if self.whisper is not None:
            return self.whisper.transcribe(self, samples)
        started = time.perf_counter()
        ids = decode_ctc(self.logits(samples), self.transcription)
        seconds = len(samples) / self.engine.spec.recipe.sample_rate
        limit = max(1, int(self.transcription.max_tokens_per_second * seconds))
        cut = max(0, len(ids) - limit)
        ids = ids[:limit]
        return Transcript(
            text=ids_to_text(ids, self.symbols),
            model=self.name,
            ids=tuple(ids),
            ms=(time.perf_counter() - started) * 1e3,
            cut=cut,
        )


class _Whisper:
    """A whisper model's tokenizer, prompt and ONNX pair (alertfusion.stt_whisper)."""

    def __init__(self, engine: Engine, name: str, tokenizer: Path, language: str) -> None:
        from alertfusion.sessions import create_session
        from alertfusion.stt_whisper import WhisperSessions

        entry = engine.spec.models[name]
        assert entry.decoder is not None and entry.alphabet is not None  # ManifestV2 checks
        self.tokenizer = read_tokenizer(tokenizer, entry.alphabet.symbols, language)
        *prompt, end = whisper_specials(language)
        self.prompt = [int(self.tokenizer.token_to_id(t)) for t in prompt]
        self.end = int(self.tokenizer.token_to_id(end))
        path = engine.bundle.path(entry.decoder.file)
        try:
            decoder = create_session(path, engine.sessions.options_for(name))
        except Exception as exc:  # onnxruntime raises its own (unexported) exception types
            raise BundleError(f"{name}: ONNX Runtime cannot load {path.name}: {exc}") from exc
        width = {o.name: o.shape for o in decoder.get_outputs()}.get("logits")
        if not width or (isinstance(width[-1], int) and width[-1] != entry.alphabet.symbols):
            raise BundleError(
                f"{name}: the decoder's logits are {width}; the tokenizer has "
                f"{entry.alphabet.symbols} tokens"
            )
        self.sessions = WhisperSessions(engine.sessions.get(name), decoder)

    def transcribe(self, owner: Transcriber, samples: np.ndarray) -> Transcript:
        from alertfusion.stt_whisper import CHUNK_SECONDS, chunks, greedy, merge

        started = time.perf_counter()
        rate = owner.engine.spec.recipe.sample_rate
        t = owner.transcription
        limit = max(1, min(448 - len(self.prompt), int(t.max_tokens_per_second * CHUNK_SECONDS)))
        parts = []
        cut = 0
        for start, stop in chunks(len(samples), rate, t.chunk_overlap_seconds):
            ids = greedy(self.sessions, owner.features(samples[start:stop]), self.prompt,
                         self.end, limit)  # fmt: skip
            cut += len(ids) == limit
            parts.append(ids)
        ids = merge(parts)
        text = " ".join(self.tokenizer.decode(ids, skip_special_tokens=True).split())
        return Transcript(text, owner.name, tuple(ids), (time.perf_counter() - started) * 1e3, cut)
