"""The demo bundle of a recipe whose transcript comes from its own speech-to-text model
(recipes/emergency-voice-offline.json): today's system built by the v1 demo, plus an
untrained DeepSpeech2-style CTC model (model_export.ctc) and its alphabet.

The speech-to-text model's weights are seeded, not trained: its transcripts are noise (the
CLI and the manifest say so). What is real is the path: the front end in the recipe's graph,
the ONNX export with a dynamic time axis and the token-exact parity with PyTorch's greedy
decode on the calibration recordings.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from alertfusion.bundle_files import sha256_file
from alertfusion.manifest import MANIFEST_FILE, BundleFile, GoldenSet
from alertfusion.manifest_v2 import AlphabetFile, ManifestV2, ModelFile
from alertfusion.recipe import schema as s
from alertfusion.recipe.v1 import legacy_parts
from model_export import ctc
from model_export.errors import ExportError, ExportReason
from model_export.onnx_export import compute_threads
from model_export.progress import Progress
from model_export.recipe_build import assemble, onnx_shapes, producer_notes

Size = Literal["full", "tiny"]
#: what the CLI and the manifest say of the untrained speech-to-text model
NOISE_NOTE = (
    "the speech-to-text model is UNTRAINED (seeded weights): its transcripts are noise; bring "
    "a trained checkpoint for real text (docs/RECIPES.md, Speech-to-text)"
)


def base_recipe(recipe: s.Recipe) -> s.Recipe:
    """`recipe` without its transcribe models (alertfusion.recipe.v1.without_transcribers),
    named as today's system."""
    from alertfusion.recipe.v1 import without_transcribers

    raw = without_transcribers(recipe).model_dump(mode="json")
    raw["name"] = "emergency-voice"
    return s.Recipe.model_validate(raw)


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
    work: Path,
    *,
    size: Size,
    seed: int,
    calibration_audio: Path,
    progress: Progress,
    bundle_version: str,
) -> ManifestV2:
    """Copy the emergency-voice bundle at `base` (v1) into `partial`, add the recipe's
    transcribe model (a seeded DeepSpeech2 or Whisper, exported, token parity checked) and
    its alphabet or tokenizer,
    and write the v2 manifest of `recipe`."""
    from model_export.recipe_demo import emergency_v2

    name = recipe.transcriber
    assert name is not None
    spec = recipe.models[name]
    assert spec.transcription is not None  # a transcribe model has one
    base_spec = emergency_v2(base, base_recipe(recipe))
    for file in base_spec.files():
        shutil.copyfile(base / file, partial / file)
    inputs = stt_inputs(recipe, name, calibration_audio)
    torch.manual_seed(seed)
    with compute_threads(1 if size == "tiny" else 0):
        if spec.transcription.family == "whisper":
            entry = _whisper_model(name, spec, inputs, partial, size=size, progress=progress)
        else:
            entry = _ctc_model(name, spec, inputs, partial, size=size, progress=progress)
    golden = base_spec.golden
    if spec.transcription.family == "ctc" and golden is not None:
        golden = _with_golden(partial, golden, name, spec, inputs)
    try:
        manifest = ManifestV2.model_validate(
            {
                **base_spec.model_dump(mode="json"),
                "golden": golden.model_dump(mode="json") if golden is not None else None,
                "bundle_version": bundle_version,
                "description": f"{base_spec.description} Transcripts: {NOISE_NOTE}.",
                "recipe": recipe.model_dump(mode="json"),
                "models": {
                    **{k: v.model_dump(mode="json") for k, v in base_spec.models.items()},
                    name: entry.model_dump(mode="json"),
                },
                "producer": producer_notes(
                    {**base_spec.producer, "torch": torch.__version__, "demo": "true"}
                ),
            }
        )
    except ValueError as exc:
        raise ExportError(ExportReason.BUNDLE_INVALID, f"manifest v2: {exc}") from exc
    manifest.dump(partial / MANIFEST_FILE)
    return manifest


#: frames of the speech-to-text model's golden input (the first calibration recording's)
GOLDEN_FRAMES = 300


def _with_golden(
    partial: Path, golden: GoldenSet, name: str, spec: s.ModelSpec, inputs: list[np.ndarray]
) -> GoldenSet:
    """The golden set with one row of the CTC model: the first calibration recording's first
    GOLDEN_FRAMES frames and fp32's logits for them (the self-check judges each frame's top
    symbol by the margin rule)."""
    from model_export.onnx_export import ort_session

    path = partial / golden.file
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    (input_name,) = spec.inputs
    row = np.ascontiguousarray(inputs[0][..., :GOLDEN_FRAMES])
    session = ort_session(partial / f"{name}.onnx")
    arrays[f"{name}/{input_name}"] = row
    arrays[f"{name}/fp32"] = session.run([spec.output.name], {input_name: row})[0].astype(
        np.float64
    )
    with path.open("wb") as f:
        np.savez_compressed(f, **arrays)
    return GoldenSet(
        file=golden.file,
        sha256=sha256_file(path),
        size_bytes=path.stat().st_size,
        inputs={**golden.inputs, name: 1},
    )


def _ctc_model(
    name: str, spec: s.ModelSpec, inputs: list[np.ndarray], partial: Path, *, size: Size,
    progress: Progress,
) -> ModelFile:  # fmt: skip
    """A seeded DeepSpeech2, exported, token parity checked, and its alphabet."""
    assert spec.transcription is not None
    bins = inputs[0].shape[2]
    symbols = ctc.demo_alphabet(size)
    model = ctc.DeepSpeech2(len(symbols), bins=bins, size=size).eval()
    ctc.check_alphabet(model, symbols, bins)
    onnx_file = partial / f"{name}.onnx"
    progress(f"{name}: {size} DeepSpeech2 (CTC over {len(symbols)} symbols)")
    ctc.export_ctc(model, bins, onnx_file)
    worst, tokens = ctc.check_token_parity(model, onnx_file, inputs, spec.transcription.blank)
    progress(
        f"{name}: ONNX decodes to PyTorch's token ids on {len(inputs)} recordings ({tokens} "
        f"tokens); max |logit difference| {worst:.2e}"
    )
    alphabet = partial / f"{name}.alphabet.json"
    ctc.write_alphabet(symbols, alphabet)
    return _entry(spec, onnx_file, alphabet, len(symbols), worst)


#: tokens per recording the Whisper parity check compares (a greedy loop over the whole
#: sequence per step is the reference: its cost grows with the square of this)
WHISPER_PARITY_TOKENS = 48


def _whisper_model(
    name: str, spec: s.ModelSpec, inputs: list[np.ndarray], partial: Path, *, size: Size,
    progress: Progress,
) -> ModelFile:  # fmt: skip
    """A seeded WhisperConfig model, its encoder and decoder step exported, token parity
    checked on the first 30 s of each recording, and its tokenizer."""
    from tokenizers import Tokenizer
    from transformers import WhisperForConditionalGeneration

    from alertfusion.stt import whisper_specials
    from model_export import whisper

    assert spec.transcription is not None
    tokenizer_file = partial / f"{name}.tokenizer.json"
    whisper.demo_tokenizer(size, tokenizer_file)
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    *prompt_tokens, end_token = whisper_specials(spec.transcription.language)
    model = WhisperForConditionalGeneration(whisper.whisper_config(size, vocab)).eval()
    progress(f"{name}: {size} Whisper (WhisperConfig, {vocab} tokens), encoder + decoder step")
    encoder, decoder = partial / f"{name}.onnx", partial / f"{name}.decoder.onnx"
    whisper.export_whisper(model, encoder, decoder)
    prompt = [whisper.token_id(tokenizer, t) for t in prompt_tokens]
    tokens = whisper.check_token_parity(
        model, encoder, decoder, inputs, prompt, whisper.token_id(tokenizer, end_token),
        WHISPER_PARITY_TOKENS,
    )  # fmt: skip
    progress(
        f"{name}: the ONNX pair decodes to PyTorch's token ids on {len(inputs)} recordings "
        f"({tokens} tokens, at most {WHISPER_PARITY_TOKENS} each)"
    )
    entry = _entry(spec, encoder, tokenizer_file, vocab, None)
    return entry.model_copy(
        update={
            "output_names": whisper.names(model.config.decoder_layers)[0],
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


def build_offline_demo(
    recipe: s.Recipe,
    out: Path,
    *,
    size: Size,
    seed: int,
    quantize: Literal["none", "int8"],
    threshold: float,
    calibration_audio: Path,
    fp32_fallback: bool,
    force: bool,
    progress: Progress,
    checkpoints_out: Path | None,
    base: Path | None = None,
) -> ManifestV2:
    """The demo bundle of `recipe` at `out`: today's system by the v1 demo (or the v1 bundle
    at `base`, reused), plus its speech-to-text model (module docstring)."""
    from model_export.demo import build_demo_bundle

    if legacy_parts(base_recipe(recipe)) is None:
        raise ExportError(
            ExportReason.BUNDLE_INVALID,
            f"recipe {recipe.name}: the demo builds a speech-to-text model beside today's "
            "emergency-voice system only",
        )
    progress(f"note: {NOISE_NOTE}")

    def build(partial: Path, work: Path) -> ManifestV2:
        source = base
        if source is None:
            source = work / "emergency-voice"
            build_demo_bundle(
                source, size=size, quantize=quantize, seed=seed,
                calibration_audio=calibration_audio, checkpoints_out=checkpoints_out,
                threshold=threshold, fp32_fallback=fp32_fallback, progress=progress,
            )  # fmt: skip
        return add_transcriber(
            recipe, Path(source), partial, work, size=size, seed=seed,
            calibration_audio=calibration_audio, progress=progress,
            bundle_version=f"demo-{recipe.name}-{size}-seed{seed}-{quantize}",
        )  # fmt: skip

    return assemble(out, force=force, progress=progress, build=build)
