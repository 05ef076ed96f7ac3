"""Today's emergency-voice bundle plus a speech-to-text model, as one v2 bundle.

Shared by the untrained demo (model_export.stt_demo: a seeded model) and the `transcriber`
command (model_export.stt_checkpoint: a trained checkpoint): the base bundle's files copied,
the model exported to ONNX with its token parity checked on the calibration recordings, its
alphabet (CTC) or tokenizer.json (Whisper) written beside it, its golden row added, and the v2
manifest of the recipe written. Only the model and what the manifest says
of it (`Provenance`) differ between the two.

With `Int8.quantize == "int8"` the exported graphs (the CTC model; Whisper's encoder and
decoder step) are quantized dynamically (model_export.quantize.quantize_stt_dynamic) and judged
against fp32 by the margin rule (alertfusion.agreement) on the calibration recordings: every
output frame's top symbol (CTC), every decoder position's next token along fp32's greedy
tokens (Whisper, teacher forced). The golden row keeps fp32's logits, so the serving CPU's
self-check judges the int8 model as it judges the classifier's.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import nn

from alertfusion.bundle_files import sha256_file
from alertfusion.manifest import MANIFEST_FILE, BundleFile, GoldenSet
from alertfusion.manifest_v2 import AlphabetFile, ManifestV2, ModelFile
from alertfusion.recipe import schema as s
from model_export import ctc
from model_export.errors import ExportError, ExportReason
from model_export.onnx_export import compute_threads
from model_export.progress import Progress
from model_export.recipe_build import onnx_shapes, producer_notes

if TYPE_CHECKING:
    from transformers import WhisperForConditionalGeneration


@dataclass(frozen=True)
class CtcModel:
    """A DeepSpeech2 (model_export.ctc) and its alphabet, one symbol per output index."""

    model: nn.Module
    symbols: list[str]
    #: how the progress lines name it
    what: str


@dataclass(frozen=True)
class WhisperModel:
    """A Whisper model and its tokenizer.json (copied into the bundle)."""

    model: WhisperForConditionalGeneration
    tokenizer: Path
    what: str


SttModel = CtcModel | WhisperModel
#: the model to package, given the calibration recordings' model inputs (a seeded model reads
#: its feature count from them; a loaded one is checked against it)
ModelSource = Callable[[list[np.ndarray]], SttModel]


@dataclass(frozen=True)
class Int8:
    """The speech-to-text model's precision (module docstring)."""

    quantize: Literal["none", "int8"] = "none"
    #: refuse int8 below this agreement with fp32 on the decisive calibration outputs
    threshold: float = 0.99
    #: keep the fp32 graph beside an int8 CTC model (served where the self-check fails)
    fp32_fallback: bool = False


@dataclass(frozen=True)
class Provenance:
    """What the manifest says of the speech-to-text model."""

    bundle_version: str
    #: appended to the base bundle's description as "Transcripts: {note}."
    note: str
    #: added to the base bundle's producer notes
    producer: dict[str, str]


def base_recipe(recipe: s.Recipe) -> s.Recipe:
    """`recipe` without its transcribe models (alertfusion.recipe.v1.without_transcribers),
    named as today's system."""
    from alertfusion.recipe.v1 import without_transcribers

    raw = without_transcribers(recipe).model_dump(mode="json")
    raw["name"] = "emergency-voice"
    return s.Recipe.model_validate(raw)


def transcriber_spec(recipe: s.Recipe) -> tuple[str, s.ModelSpec, s.Transcription]:
    """The recipe's transcribe model: (name, spec, transcription); BUNDLE_INVALID when it has
    none."""
    name = recipe.transcriber
    spec = recipe.models[name] if name is not None else None
    if name is None or spec is None or spec.transcription is None:
        raise ExportError(
            ExportReason.BUNDLE_INVALID,
            f"recipe {recipe.name} has no speech-to-text model (a model of task 'transcribe' "
            "named by transcript_source 'model:NAME')",
        )
    return name, spec, spec.transcription


def check_family(recipe: s.Recipe, family: str) -> None:
    """Refuse a `family` model for a recipe whose transcribe model is of another family."""
    name, _, transcription = transcriber_spec(recipe)
    if transcription.family != family:
        raise ExportError(
            ExportReason.BUNDLE_INVALID,
            f"recipe {recipe.name}: its speech-to-text model {name!r} is of family "
            f"{transcription.family!r} (models.{name}.transcription.family); a {family} "
            "model was given",
        )


def base_manifest(base: Path, recipe: s.Recipe) -> ManifestV2:
    """The manifest of the emergency-voice bundle at `base` (v1, or v2 without a
    speech-to-text model) as v2 with `recipe`'s base recipe; BUNDLE_INVALID when it cannot be
    read, already transcribes, or is not today's system with the recipe's features and
    labels."""
    from alertfusion.errors import BundleError
    from alertfusion.manifest_v2 import as_v2, legacy_manifest, load_manifest
    from alertfusion.recipe.v1 import legacy_parts
    from model_export.recipe_demo import emergency_v2

    want = base_recipe(recipe)
    try:
        found = load_manifest(base / MANIFEST_FILE)
    except BundleError as exc:
        raise ExportError(ExportReason.BUNDLE_INVALID, f"base {base}: {exc.message}") from exc
    spec = as_v2(found)
    if spec.recipe.transcriber is not None:
        raise ExportError(
            ExportReason.BUNDLE_INVALID,
            f"base {base} already has a speech-to-text model ({spec.recipe.transcriber}); give "
            "the emergency-voice bundle it was added to",
        )
    parts = legacy_parts(spec.recipe)
    if parts is None or parts != legacy_parts(want):
        raise ExportError(
            ExportReason.BUNDLE_INVALID,
            f"base {base} (recipe {spec.recipe.name}) is not today's emergency-voice system "
            f"with the features and labels of recipe {recipe.name}",
        )
    if not isinstance(found, ManifestV2):  # v1: its shapes read from the graphs
        return emergency_v2(base, want)
    try:
        upgraded = ManifestV2.model_validate(
            {**spec.model_dump(mode="json"), "recipe": want.model_dump(mode="json")}
        )
    except ValueError as exc:
        raise ExportError(ExportReason.BUNDLE_INVALID, f"base {base}: {exc}") from exc
    if legacy_manifest(upgraded) is None:
        raise ExportError(ExportReason.BUNDLE_INVALID, f"base {base}: not today's system")
    return upgraded


def stt_inputs(recipe: s.Recipe, name: str, audio: Path) -> list[np.ndarray]:
    """The transcribe model's input for every calibration recording (whole recordings, as the
    runtime feeds it), each (1, 1, bins, frames) float32."""
    from alertfusion.audio import decode_audio
    from alertfusion.recipe.graph import FeatureGraph, layout
    from model_export.calibration import audio_files

    (feed,) = recipe.models[name].inputs.values()
    graph = FeatureGraph(recipe)
    out = []
    for path in audio_files(audio):
        y = decode_audio(path, sample_rate=recipe.sample_rate).samples
        value = graph.run(y, {feed.node})[feed.node]
        out.append(np.ascontiguousarray(layout(value, feed.layout)[None], dtype=np.float32))
    if not out:
        raise ExportError(ExportReason.CALIBRATION_INVALID, f"no audio in {audio}")
    return out


def add_transcriber(
    recipe: s.Recipe,
    base: Path,
    partial: Path,
    *,
    source: ModelSource,
    calibration_audio: Path,
    progress: Progress,
    provenance: Provenance,
    threads: int,
    int8: Int8 | None = None,
) -> ManifestV2:
    """Copy the emergency-voice bundle at `base` (v1, or v2 without a speech-to-text model)
    into `partial`, add the recipe's transcribe model made by `source` (exported, token parity
    checked, quantized by `int8`) and its alphabet or tokenizer, and write the v2 manifest of
    `recipe`."""
    int8 = int8 or Int8()
    name, spec, transcription = transcriber_spec(recipe)
    base_spec = base_manifest(base, recipe)
    for file in base_spec.files():
        shutil.copyfile(base / file, partial / file)
    inputs = stt_inputs(recipe, name, calibration_audio)
    with compute_threads(threads):
        model = source(inputs)
        if isinstance(model, WhisperModel):
            check_family(recipe, "whisper")
            entry = _whisper_model(name, spec, model, inputs, partial, progress=progress)
        else:
            check_family(recipe, "ctc")
            entry = _ctc_model(name, spec, model, inputs, partial, progress=progress)
    golden = base_spec.golden
    if golden is not None:
        golden = _with_golden(partial, golden, name, spec, entry, inputs)
    if int8.quantize == "int8":
        entry = _quantized(name, spec, entry, inputs, partial, int8, progress=progress)
    try:
        manifest = ManifestV2.model_validate(
            {
                **base_spec.model_dump(mode="json"),
                "golden": golden.model_dump(mode="json") if golden is not None else None,
                "bundle_version": provenance.bundle_version,
                "description": f"{base_spec.description} Transcripts: {provenance.note}.",
                "recipe": recipe.model_dump(mode="json"),
                "models": {
                    **{k: v.model_dump(mode="json") for k, v in base_spec.models.items()},
                    name: entry.model_dump(mode="json"),
                },
                "producer": producer_notes(
                    {**base_spec.producer, "torch": torch.__version__, **provenance.producer}
                ),
            }
        )
    except ValueError as exc:
        raise ExportError(ExportReason.BUNDLE_INVALID, f"manifest v2: {exc}") from exc
    manifest.dump(partial / MANIFEST_FILE)
    return manifest


#: frames of the CTC model's golden input (the first calibration recording's)
GOLDEN_FRAMES = 300
#: tokens of the Whisper model's golden row (fp32's first greedy tokens, teacher forced)
GOLDEN_TOKENS = 8


def _with_golden(
    partial: Path, golden: GoldenSet, name: str, spec: s.ModelSpec, entry: ModelFile,
    inputs: list[np.ndarray],
) -> GoldenSet:  # fmt: skip
    """The golden set with one row of the speech-to-text model (still fp32 in `partial`), from
    the first calibration recording: the CTC model's first GOLDEN_FRAMES frames and fp32's
    logits for them; or Whisper's log-mel input, the prompt and fp32's first GOLDEN_TOKENS
    greedy tokens (`input_ids`), and fp32's next-token logits from the prompt's last position
    on, teacher forced (float32: a vocabulary of 51,865). The self-check judges each frame's
    top symbol, or each position's next token, by the margin rule."""
    from model_export.onnx_export import ort_session

    path = partial / golden.file
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    (input_name,) = spec.inputs
    if entry.decoder is None:
        row = np.ascontiguousarray(inputs[0][..., :GOLDEN_FRAMES])
        session = ort_session(partial / entry.file)
        arrays[f"{name}/{input_name}"] = row
        arrays[f"{name}/fp32"] = session.run([spec.output.name], {input_name: row})[0].astype(
            np.float64
        )
    else:
        from alertfusion.stt_whisper import WhisperSessions, greedy, step_logits

        sessions = WhisperSessions(
            ort_session(partial / entry.file), ort_session(partial / entry.decoder.file)
        )
        prompt, end = _whisper_prompt(spec, partial, entry)
        ids = prompt + greedy(sessions, inputs[0], prompt, end, GOLDEN_TOKENS)
        arrays[f"{name}/{input_name}"] = inputs[0]
        arrays[f"{name}/input_ids"] = np.asarray([ids], dtype=np.int64)
        logits = step_logits(sessions, inputs[0], ids)[len(prompt) - 1 :]
        arrays[f"{name}/fp32"] = logits[np.newaxis].astype(np.float32)
    with path.open("wb") as f:
        np.savez_compressed(f, **arrays)
    return GoldenSet(
        file=golden.file,
        sha256=sha256_file(path),
        size_bytes=path.stat().st_size,
        inputs={**golden.inputs, name: 1},
    )


def _whisper_prompt(spec: s.ModelSpec, partial: Path, entry: ModelFile) -> tuple[list[int], int]:
    """The prompt's token ids and the end token's, from the bundle's tokenizer.json."""
    from tokenizers import Tokenizer

    from alertfusion.stt import whisper_specials
    from model_export import whisper

    assert spec.transcription is not None and entry.alphabet is not None
    tokenizer = Tokenizer.from_file(str(partial / entry.alphabet.file))
    *prompt_tokens, end_token = whisper_specials(spec.transcription.language)
    prompt = [whisper.token_id(tokenizer, t) for t in prompt_tokens]
    return prompt, whisper.token_id(tokenizer, end_token)


def _ctc_model(
    name: str, spec: s.ModelSpec, m: CtcModel, inputs: list[np.ndarray], partial: Path, *,
    progress: Progress,
) -> ModelFile:  # fmt: skip
    """The DeepSpeech2 exported, token parity checked, and its alphabet."""
    assert spec.transcription is not None
    bins = inputs[0].shape[2]
    ctc.check_alphabet(m.model, m.symbols, bins)
    onnx_file = partial / f"{name}.onnx"
    progress(f"{name}: {m.what} (CTC over {len(m.symbols)} symbols)")
    ctc.export_ctc(m.model, bins, onnx_file)
    worst, tokens = ctc.check_token_parity(m.model, onnx_file, inputs, spec.transcription.blank)
    progress(
        f"{name}: ONNX decodes to PyTorch's token ids on {len(inputs)} recordings ({tokens} "
        f"tokens); max |logit difference| {worst:.2e}"
    )
    alphabet = partial / f"{name}.alphabet.json"
    ctc.write_alphabet(m.symbols, alphabet)
    return _entry(spec, onnx_file, alphabet, len(m.symbols), worst)


#: tokens per recording the Whisper parity check compares (a greedy loop over the whole
#: sequence per step is the reference: its cost grows with the square of this)
WHISPER_PARITY_TOKENS = 48
#: decoder positions the runtime may use (alertfusion.stt: Whisper's 448, prompt included)
WHISPER_POSITIONS = 448


def _whisper_model(
    name: str, spec: s.ModelSpec, m: WhisperModel, inputs: list[np.ndarray], partial: Path, *,
    progress: Progress,
) -> ModelFile:  # fmt: skip
    """The Whisper model's encoder and decoder step exported, token parity checked on the
    first 30 s of each recording, and its tokenizer."""
    from tokenizers import Tokenizer

    from alertfusion.stt import whisper_specials
    from model_export import whisper

    assert spec.transcription is not None
    model, cfg = m.model, m.model.config
    _, mels, frames = inputs[0].shape
    if (cfg.num_mel_bins, 2 * cfg.max_source_positions) != (mels, frames) or mels != whisper.N_MELS:
        raise ExportError(
            ExportReason.CHECKPOINT_MISMATCH,
            f"{name}: the model reads {cfg.num_mel_bins} mel bins x "
            f"{2 * cfg.max_source_positions} frames; the recipe's front end gives {mels} x "
            f"{frames} and the export takes {whisper.N_MELS} x {whisper.N_FRAMES}",
        )
    if cfg.max_target_positions < WHISPER_POSITIONS:
        raise ExportError(
            ExportReason.CHECKPOINT_MISMATCH,
            f"{name}: the decoder has {cfg.max_target_positions} positions; the runtime uses "
            f"up to {WHISPER_POSITIONS}",
        )
    tokenizer_file = partial / f"{name}.tokenizer.json"
    shutil.copyfile(m.tokenizer, tokenizer_file)
    try:
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
    except Exception as exc:  # tokenizers raises its own exception type
        raise ExportError(
            ExportReason.TOKENIZER_INVALID, f"{m.tokenizer}: not a readable tokenizer.json ({exc})"
        ) from exc
    vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    width = model.get_output_embeddings().out_features
    if vocab != width:
        raise ExportError(
            ExportReason.VOCAB_MISMATCH,
            f"the tokenizer {m.tokenizer} has {vocab} tokens (added tokens included); the "
            f"model's output has {width}",
        )
    *prompt_tokens, end_token = whisper_specials(spec.transcription.language)
    prompt = [whisper.token_id(tokenizer, t) for t in prompt_tokens]
    end = whisper.token_id(tokenizer, end_token)
    progress(f"{name}: {m.what} ({vocab} tokens), encoder + decoder step")
    encoder, decoder = partial / f"{name}.onnx", partial / f"{name}.decoder.onnx"
    whisper.export_whisper(model, encoder, decoder)
    tokens = whisper.check_token_parity(
        model, encoder, decoder, inputs, prompt, end, WHISPER_PARITY_TOKENS
    )
    progress(
        f"{name}: the ONNX pair decodes to PyTorch's token ids on {len(inputs)} recordings "
        f"({tokens} tokens, at most {WHISPER_PARITY_TOKENS} each)"
    )
    entry = _entry(spec, encoder, tokenizer_file, vocab, None)
    return entry.model_copy(
        update={
            "output_names": whisper.names(cfg.decoder_layers)[0],
            "decoder": BundleFile(
                file=decoder.name, sha256=sha256_file(decoder), size_bytes=decoder.stat().st_size
            ),
        }
    )


def _entry(
    spec: s.ModelSpec, onnx_file: Path, alphabet: Path, symbols: int, parity: float | None
) -> ModelFile:
    shapes, output = onnx_shapes(onnx_file, spec.output.name)
    return ModelFile(
        file=onnx_file.name,
        sha256=sha256_file(onnx_file),
        input_names=list(spec.inputs),
        output_names=[spec.output.name],
        labels=[],
        parity_max_abs_diff=parity,
        size_bytes=onnx_file.stat().st_size,
        input_shapes={k: shapes.get(k, []) for k in spec.inputs},
        output_shape=output,
        alphabet=AlphabetFile(
            file=alphabet.name,
            sha256=sha256_file(alphabet),
            size_bytes=alphabet.stat().st_size,
            symbols=symbols,
        ),
    )


def _quantized(
    name: str, spec: s.ModelSpec, entry: ModelFile, inputs: list[np.ndarray], partial: Path,
    int8: Int8, *, progress: Progress,
) -> ModelFile:  # fmt: skip
    """The entry's graphs replaced by their dynamic int8 versions, judged against fp32 by the
    margin rule (QUANTIZATION_REFUSED on real disagreement); the CTC model's fp32 graph kept
    as its fallback with `int8.fp32_fallback`."""
    from model_export.quantize import agreement_report, enforce_threshold, quantize_stt_dynamic

    assert spec.transcription is not None
    graphs = [entry.file] + ([entry.decoder.file] if entry.decoder is not None else [])
    fp32 = {g: partial / g.replace(".onnx", ".fp32.onnx") for g in graphs}
    for g in graphs:
        (partial / g).rename(fp32[g])
        quantize_stt_dynamic(fp32[g], partial / g)
    if entry.decoder is None:
        want, got = _ctc_rows(fp32[entry.file], partial / entry.file, spec, inputs)
    else:
        want, got = _whisper_rows(spec, entry, fp32, partial, inputs)
    report = agreement_report(want, got, method="dynamic", threshold=int8.threshold)
    progress(
        f"{name}: int8 (dynamic) agrees with fp32 on {report.decisive_agreement or 0:.1%} of "
        f"{report.n_decisive} decisive outputs of {report.n_inputs} ({report.near_ties} near "
        f"ties); largest logit spread {report.max_logit_spread or 0:.3g}"
    )
    enforce_threshold(name, report, fp32_option="--quantize none")
    keep = int8.fp32_fallback and entry.decoder is None
    for g in graphs:
        if not (keep and g == entry.file):
            fp32[g].unlink()
    update: dict[str, object] = {
        "sha256": sha256_file(partial / entry.file),
        "size_bytes": (partial / entry.file).stat().st_size,
        "quantization": "int8_dynamic",
        "quantization_report": report,
    }
    if keep:
        kept = fp32[entry.file]
        update["fp32_fallback"] = BundleFile(
            file=kept.name, sha256=sha256_file(kept), size_bytes=kept.stat().st_size
        )
    if entry.decoder is not None:
        decoder = partial / entry.decoder.file
        update["decoder"] = BundleFile(
            file=decoder.name, sha256=sha256_file(decoder), size_bytes=decoder.stat().st_size
        )
    return entry.model_copy(update=update)


def _ctc_rows(
    fp32: Path, int8: Path, spec: s.ModelSpec, inputs: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Every calibration frame's logits, fp32 and int8: (frames, symbols) each."""
    from model_export.onnx_export import ort_session

    (input_name,) = spec.inputs
    out = []
    for path in (fp32, int8):
        session = ort_session(path)
        rows = [session.run([spec.output.name], {input_name: x})[0][0] for x in inputs]
        out.append(np.concatenate(rows).astype(np.float64))
    return out[0], out[1]


def _whisper_rows(
    spec: s.ModelSpec, entry: ModelFile, fp32: dict[str, Path], partial: Path,
    inputs: list[np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Each calibration recording's first 30 s: fp32's greedy tokens (at most
    WHISPER_PARITY_TOKENS), then the next-token logits at every position from the prompt's
    last token on, fp32 and int8 teacher forced along those same tokens."""
    from alertfusion.stt_whisper import WhisperSessions, greedy, step_logits
    from model_export.onnx_export import ort_session

    assert entry.decoder is not None
    prompt, end = _whisper_prompt(spec, partial, entry)
    pairs = [
        WhisperSessions(ort_session(fp32[entry.file]), ort_session(fp32[entry.decoder.file])),
        WhisperSessions(
            ort_session(partial / entry.file), ort_session(partial / entry.decoder.file)
        ),
    ]
    want, got = [], []
    for x in inputs:
        ids = prompt + greedy(pairs[0], x, prompt, end, WHISPER_PARITY_TOKENS)
        first = len(prompt) - 1
        want.append(step_logits(pairs[0], x, ids)[first:])
        got.append(step_logits(pairs[1], x, ids)[first:])
    return np.concatenate(want), np.concatenate(got)
