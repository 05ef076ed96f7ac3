"""`python -m model_export transcriber`: a trained speech-to-text checkpoint added to an
emergency-voice bundle, as the bundle of a recipe whose transcript comes from its own model.

Two kinds of checkpoint, by the recipe's `transcription.family`:

* whisper: a Hugging Face directory (config.json, model.safetensors or pytorch_model.bin,
  tokenizer.json), read with `from_pretrained(local_files_only=True)`; every weight must be in
  the files (none left newly initialised);
* ctc: a state dict of model_export.ctc.DeepSpeech2 (torch.save(model.state_dict())), its
  sizes read from the shapes, and its character list (model_export.ctc.read_alphabet), one
  symbol per output index, the blank where the recipe says.

The model then goes through the demo's own path (model_export.stt_bundle: export, token
parity, alphabet or tokenizer, golden row, manifest), dynamic int8 by default from the command
line (judged against fp32 by the margin rule). The manifest names the checkpoint and
its sha256 and keeps the base bundle's `trained` flag; it carries no demo marks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from alertfusion.bundle_files import sha256_file
from alertfusion.manifest_v2 import ManifestV2
from alertfusion.stt import checkpoint_key
from model_export.errors import ExportError, ExportReason
from model_export.progress import Progress
from model_export.stt_bundle import (
    CtcModel,
    Int8,
    ModelSource,
    Provenance,
    SttModel,
    WhisperModel,
    add_transcriber,
    base_recipe,
    check_family,
    transcriber_spec,
)

WHISPER_CONFIG = "config.json"
WHISPER_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
WHISPER_TOKENIZER = "tokenizer.json"


def whisper_weights(directory: Path) -> Path:
    """The weights file of a Hugging Face Whisper directory; CHECKPOINT_UNREADABLE when a file
    is missing, CHECKPOINT_MISMATCH when config.json is not a Whisper model's."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ExportError(
            ExportReason.CHECKPOINT_UNREADABLE, f"Whisper checkpoint {directory} is not a directory"
        )
    weights = [directory / f for f in WHISPER_WEIGHTS if (directory / f).is_file()]
    missing = [f for f in (WHISPER_CONFIG, WHISPER_TOKENIZER) if not (directory / f).is_file()]
    if not weights:
        missing.append(" or ".join(WHISPER_WEIGHTS))
    if missing:
        raise ExportError(
            ExportReason.CHECKPOINT_UNREADABLE,
            f"Whisper checkpoint {directory} lacks {', '.join(missing)} (save the model and "
            "its fast tokenizer with save_pretrained)",
        )
    try:
        config = json.loads((directory / WHISPER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(
            ExportReason.CHECKPOINT_UNREADABLE, f"{directory / WHISPER_CONFIG}: {exc}"
        ) from exc
    kind = config.get("model_type") if isinstance(config, dict) else None
    if kind != "whisper":
        raise ExportError(
            ExportReason.CHECKPOINT_MISMATCH,
            f"{directory / WHISPER_CONFIG} describes a {kind!r} model, not 'whisper'",
        )
    return weights[0]


def load_whisper(directory: Path) -> WhisperModel:
    """The Whisper model of a Hugging Face directory in fp32 with eager attention (plain
    matmuls in the exported encoder), and its tokenizer.json."""
    import torch
    from transformers import WhisperForConditionalGeneration
    from transformers.utils import logging as hf_logging

    from model_export.onnx_export import quiet

    # transformers' progress bar and load report: the missing weights are refused below
    bars, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        with quiet():
            loaded: Any = WhisperForConditionalGeneration.from_pretrained(
                directory, local_files_only=True, attn_implementation="eager",
                dtype=torch.float32, output_loading_info=True,
            )  # fmt: skip
            model, info = loaded  # (model, loading info) with output_loading_info
    except (OSError, ValueError, RuntimeError) as exc:  # unreadable files, shapes, config
        raise ExportError(
            ExportReason.CHECKPOINT_UNREADABLE,
            f"Whisper checkpoint {directory}: {type(exc).__name__}: {str(exc)[:300]}",
        ) from exc
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    problems = {k: sorted(info.get(k) or []) for k in ("missing_keys", "mismatched_keys")}
    if any(problems.values()):
        raise ExportError(
            ExportReason.CHECKPOINT_MISMATCH,
            f"Whisper checkpoint {directory} does not fill the model its config.json describes: "
            + "; ".join(f"{k}: {v[:5]}" for k, v in problems.items() if v),
        )
    return WhisperModel(model.eval(), Path(directory) / WHISPER_TOKENIZER, f"Whisper {directory}")


def build_transcriber_bundle(
    recipe_path: Path,
    base: Path,
    out: Path,
    *,
    whisper: Path | None,
    ctc_checkpoint: Path | None,
    alphabet: Path | None,
    calibration_audio: Path,
    force: bool,
    bundle_version: str | None,
    progress: Progress,
    int8: Int8 | None = None,
) -> ManifestV2:
    """The bundle of `recipe_path` at `out`: the emergency-voice bundle at `base` (v1, or v2
    without a speech-to-text model) plus the trained checkpoint (module docstring), in fp32
    unless `int8` says otherwise."""
    from alertfusion.recipe.v1 import legacy_parts
    from model_export import ctc
    from model_export.recipe_build import assemble, load_recipe

    recipe = load_recipe(recipe_path)
    name, _, _ = transcriber_spec(recipe)
    if (whisper is None) == (ctc_checkpoint is None):
        raise ExportError(
            ExportReason.BUNDLE_INVALID,
            "give one checkpoint: --whisper DIR, or --ctc CKPT.pt with --alphabet FILE",
        )
    if (ctc_checkpoint is None) != (alphabet is None):
        raise ExportError(
            ExportReason.BUNDLE_INVALID,
            "--alphabet goes with --ctc (a Whisper checkpoint brings its tokenizer.json)"
            if alphabet is not None
            else "--ctc needs --alphabet FILE: the model's character list, blank first",
        )
    check_family(recipe, "whisper" if whisper is not None else "ctc")
    if legacy_parts(base_recipe(recipe)) is None:
        raise ExportError(
            ExportReason.BUNDLE_INVALID,
            f"recipe {recipe.name}: a speech-to-text model is added beside today's "
            "emergency-voice system only",
        )
    source: ModelSource
    if whisper is not None:
        weights = whisper_weights(whisper)
        kind = "Whisper"

        def source(inputs: list[np.ndarray]) -> SttModel:
            return load_whisper(whisper)

    else:
        assert ctc_checkpoint is not None and alphabet is not None
        from model_export.checkpoints import load_ctc_checkpoint, read_checkpoint

        symbols = ctc.read_alphabet(alphabet)
        read_checkpoint(ctc_checkpoint, what="DeepSpeech2 checkpoint")  # readable, early
        weights, kind = ctc_checkpoint, "DeepSpeech2"

        def source(inputs: list[np.ndarray]) -> SttModel:
            model = load_ctc_checkpoint(ctc_checkpoint, bins=inputs[0].shape[2])
            return CtcModel(model.eval(), symbols, f"DeepSpeech2 {ctc_checkpoint}")

    digest = sha256_file(weights)
    provenance = Provenance(
        bundle_version=bundle_version or _default_version(base, name, digest),
        note=f"{name} is the trained {kind} checkpoint {weights.name} (sha256 {digest[:12]})",
        producer={checkpoint_key(name): f"{kind}: {weights.name}, sha256 {digest}"},
    )
    progress(f"{name}: {kind} checkpoint {weights} (sha256 {digest[:12]})")

    def build(partial: Path, work: Path) -> ManifestV2:
        return add_transcriber(
            recipe, Path(base), partial, source=source, calibration_audio=calibration_audio,
            progress=progress, provenance=provenance, threads=0, int8=int8,
        )  # fmt: skip

    return assemble(out, force=force, progress=progress, build=build)


def _default_version(base: Path, name: str, digest: str) -> str:
    """The base bundle's version, `+`, the model's name and the checkpoint's hash."""
    from alertfusion.errors import BundleError
    from alertfusion.manifest import MANIFEST_FILE
    from alertfusion.manifest_v2 import load_manifest

    try:
        version = load_manifest(Path(base) / MANIFEST_FILE).bundle_version
    except BundleError as exc:
        raise ExportError(ExportReason.BUNDLE_INVALID, f"base {base}: {exc.message}") from exc
    suffix = f"+{name}-{digest[:12]}"
    return version[: 128 - len(suffix)] + suffix
