"""The demo bundle of a recipe whose transcript comes from its own speech-to-text model
(recipes/emergency-voice-offline.json): today's system built by the v1 demo, plus an
untrained DeepSpeech2-style CTC model (model_export.ctc) and its alphabet, or an untrained
Whisper and its tokenizer (model_export.whisper), added by model_export.stt_bundle.

The speech-to-text model's weights are seeded, not trained: its transcripts are noise (the
CLI and the manifest say so). What is real is the path: the front end in the recipe's graph,
the ONNX export with a dynamic time axis and the token-exact parity with PyTorch's greedy
decode on the calibration recordings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch

from alertfusion.manifest_v2 import ManifestV2
from alertfusion.recipe import schema as s
from alertfusion.recipe.v1 import legacy_parts
from model_export import ctc
from model_export.errors import ExportError, ExportReason
from model_export.progress import Progress
from model_export.recipe_build import assemble
from model_export.stt_bundle import (
    CtcModel,
    ModelSource,
    Provenance,
    SttModel,
    WhisperModel,
    add_transcriber,
    base_recipe,
    transcriber_spec,
)

Size = Literal["full", "tiny"]
#: what the CLI and the manifest say of the untrained speech-to-text model
NOISE_NOTE = (
    "the speech-to-text model is UNTRAINED (seeded weights): its transcripts are noise; bring "
    "a trained checkpoint for real text (docs/RECIPES.md, Speech-to-text)"
)


def seeded_model(recipe: s.Recipe, work: Path, *, size: Size, seed: int) -> ModelSource:
    """The recipe's transcribe model with seeded weights: a DeepSpeech2 over the demo alphabet
    (its feature count read from the inputs), or a WhisperConfig model with a tokenizer learnt
    from the seeded Korean corpus (written in `work`)."""
    name, _, transcription = transcriber_spec(recipe)

    def ctc_model(inputs: list[np.ndarray]) -> SttModel:
        torch.manual_seed(seed)
        symbols = ctc.demo_alphabet(size)
        model = ctc.DeepSpeech2(len(symbols), bins=inputs[0].shape[2], size=size).eval()
        return CtcModel(model, symbols, f"{size} DeepSpeech2")

    def whisper_model(inputs: list[np.ndarray]) -> SttModel:
        from tokenizers import Tokenizer
        from transformers import WhisperForConditionalGeneration

        from model_export import whisper

        torch.manual_seed(seed)
        tokenizer = work / f"{name}.tokenizer.json"
        whisper.demo_tokenizer(size, tokenizer)
        vocab = Tokenizer.from_file(str(tokenizer)).get_vocab_size(with_added_tokens=True)
        model = WhisperForConditionalGeneration(whisper.whisper_config(size, vocab)).eval()
        return WhisperModel(model, tokenizer, f"{size} Whisper (WhisperConfig)")

    return whisper_model if transcription.family == "whisper" else ctc_model


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
    """The demo bundle of `recipe` at `out`: today's system by the v1 demo (or the bundle at
    `base`, reused: v1, or v2 without a speech-to-text model), plus its speech-to-text model
    (module docstring)."""
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
            recipe, Path(source), partial, source=seeded_model(recipe, work, size=size, seed=seed),
            calibration_audio=calibration_audio, progress=progress, provenance=Provenance(
                bundle_version=f"demo-{recipe.name}-{size}-seed{seed}-{quantize}",
                note=NOISE_NOTE, producer={"demo": "true"},
            ), threads=1 if size == "tiny" else 0,
        )  # fmt: skip

    return assemble(out, force=force, progress=progress, build=build)
