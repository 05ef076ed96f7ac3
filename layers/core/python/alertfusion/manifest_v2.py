"""Manifest v2: a recipe (alertfusion.recipe) and the files that serve it.

The recipe says how the bundle turns audio into a verdict; the rest is what v1 already had
(every file with its sha256, the tokenizer for a text model, the golden set keyed by model
name, fp32 fallbacks, quantization reports) plus the shapes of each model file's inputs and
output, so that a node feeding an input of the wrong shape, or labels that do not fit an
output, are refused when the bundle loads. A v1 manifest is mapped onto v2 at load
(`from_v1`); `load_manifest` reads either.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from alertfusion.errors import BundleError, ReasonCode
from alertfusion.manifest import (
    MANIFEST_FILE,
    BundleFile,
    GoldenSet,
    Manifest,
    OnnxModel,
    TextPreprocessing,
    _Strict,
)
from alertfusion.recipe import schema as s

SCHEMA_VERSION_2 = 2
#: a dimension of a model file's input or output: a size, or None where it is dynamic
Dims = list[int | None]


class AlphabetFile(BundleFile):
    """A transcribe model's alphabet: a JSON file {"symbols": [...]} (alertfusion.stt), one
    symbol per index of the model's output's last axis."""

    symbols: int = Field(..., ge=2)


class ModelFile(OnnxModel):
    """A model file of a v2 bundle: v1's entry plus the shapes read from the ONNX graph
    (batch axis first). `output_names[0]` is the output the recipe reads."""

    input_shapes: dict[str, Dims]
    output_shape: Dims
    #: a transcribe model's alphabet (CTC) or tokenizer.json (whisper; `symbols` is its
    #: vocabulary size), required there, refused elsewhere
    alphabet: AlphabetFile | None = None
    #: a whisper model's decoder step with its key/value cache (the entry's file is the
    #: encoder)
    decoder: BundleFile | None = None


class ManifestV2(_Strict):
    schema_version: Literal[2] = 2
    bundle_version: str = Field(..., min_length=1, max_length=128)
    created_at: datetime
    #: False for `model_export demo` bundles (deterministic random weights)
    trained: bool
    description: str = ""
    recipe: s.Recipe
    models: dict[str, ModelFile]
    #: the tokenizer of a transcript model
    text: TextPreprocessing | None = None
    opset: int = Field(17, ge=7)
    producer: dict[str, str] = Field(default_factory=dict)
    golden: GoldenSet | None = None

    @model_validator(mode="after")
    def _files_fit_the_recipe(self) -> ManifestV2:
        recipe = self.recipe
        if set(self.models) != set(recipe.models):
            raise ValueError(
                f"models {sorted(self.models)} are not the recipe's {sorted(recipe.models)}"
            )
        for name, spec in recipe.models.items():
            entry = self.models[name]
            where = f"models.{name}"
            if entry.labels != spec.label_names:
                raise ValueError(f"{where}.labels {entry.labels} are not the recipe's")
            if sorted(entry.input_names) != sorted(spec.input_names):
                raise ValueError(
                    f"{where}.input_names {entry.input_names} are not the recipe's "
                    f"{spec.input_names}"
                )
            if sorted(entry.input_shapes) != sorted(entry.input_names):
                raise ValueError(f"{where}.input_shapes does not name every input")
            if not entry.output_names or entry.output_names[0] != spec.output.name:
                raise ValueError(f"{where}.output_names must start with {spec.output.name!r}")
            width = entry.output_shape[-1] if entry.output_shape else None
            if spec.task == "transcribe":
                _check_transcriber(where, spec, entry)
                continue
            if entry.alphabet is not None:
                raise ValueError(f"{where}.alphabet: only a transcribe model has one")
            if len(entry.output_shape) != 2 or width != spec.output_width:
                raise ValueError(
                    f"{where}: output {spec.output.name} has shape {entry.output_shape}; "
                    f"{len(spec.labels)} labels of a {spec.output.kind} output need "
                    f"[batch, {spec.output_width}]"
                )
            if spec.source == "transcript" and self.text is None:
                raise ValueError(f"{where} reads the transcript: the manifest needs `text`")
        for name, node in recipe.features.items():
            if isinstance(node, s.Affine) and (node.mean is None or node.scale is None):
                raise ValueError(
                    f"recipe.features.{name}: a bundle carries the fitted mean and scale "
                    "(model_export fills them)"
                )
        if self.golden is not None:
            unknown = sorted(set(self.golden.inputs) - set(self.models))
            if unknown:
                raise ValueError(f"golden.inputs names unknown models {unknown}")
        return self

    def model_entries(self) -> dict[str, OnnxModel]:
        return dict(self.models)

    def files(self) -> dict[str, str]:
        """Every file of the bundle (besides the manifest) and its sha256."""
        out = {}
        for model in self.models.values():
            out[model.file] = model.sha256
            if model.alphabet is not None:
                out[model.alphabet.file] = model.alphabet.sha256
            if model.decoder is not None:
                out[model.decoder.file] = model.decoder.sha256
            if model.fp32_fallback is not None:
                out[model.fp32_fallback.file] = model.fp32_fallback.sha256
        if self.text is not None:
            out[self.text.tokenizer_file] = self.text.tokenizer_sha256
        if self.golden is not None:
            out[self.golden.file] = self.golden.sha256
        return out

    def dump(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")


def _check_transcriber(where: str, spec: s.ModelSpec, entry: ModelFile) -> None:
    """A transcribe model's file: [batch, frames, symbols] logits over its alphabet."""
    alphabet = entry.alphabet
    if alphabet is None:
        raise ValueError(f"{where}.alphabet: a transcribe model needs its alphabet file")
    if entry.labels:
        raise ValueError(f"{where}.labels: a transcribe model has none")
    assert spec.transcription is not None  # ModelSpec requires it for task transcribe
    if spec.transcription.family == "whisper":
        if entry.decoder is None:
            raise ValueError(f"{where}.decoder: a whisper model needs its decoder file")
        if len(entry.output_shape) != 4:
            raise ValueError(
                f"{where}: output {spec.output.name} has shape {entry.output_shape}; the "
                "encoder gives cross-attention keys [batch, heads, frames, head_dim]"
            )
        return
    if entry.decoder is not None:
        raise ValueError(f"{where}.decoder: only a whisper model has one")
    shape = entry.output_shape
    if len(shape) != 3 or shape[-1] != alphabet.symbols:
        raise ValueError(
            f"{where}: output {spec.output.name} has shape {shape}; an alphabet of "
            f"{alphabet.symbols} symbols needs [batch, frames, {alphabet.symbols}]"
        )
    if spec.transcription.blank >= alphabet.symbols:
        raise ValueError(
            f"recipe.models.{where.split('.', 1)[1]}.transcription.blank: "
            f"{spec.transcription.blank} is outside the alphabet of {alphabet.symbols}"
        )


def _v1_shapes(manifest: Manifest) -> dict[str, ModelFile]:
    """v1's models as v2 entries: the shapes every v1 bundle has by construction (the image,
    token ids of any length, one logit per label)."""
    out = {}
    image = [None, *manifest.audio.input_shape]
    for name, entry in manifest.model_entries().items():
        inputs: dict[str, Dims] = {
            i: list(image) if name != "text" else [None, None] for i in entry.input_names
        }
        out[name] = ModelFile(
            **entry.model_dump(), input_shapes=inputs, output_shape=[None, len(entry.labels)]
        )
    return out


def from_v1(manifest: Manifest) -> ManifestV2:
    """A v1 manifest as v2: today's system as a recipe (alertfusion.recipe.v1), the same files."""
    from alertfusion.recipe.v1 import recipe_from_v1

    models = _v1_shapes(manifest)
    recipe = recipe_from_v1(manifest)
    return ManifestV2(
        bundle_version=manifest.bundle_version,
        created_at=manifest.created_at,
        trained=manifest.trained,
        description=manifest.description,
        recipe=recipe,
        models={name: models[name] for name in recipe.models},
        text=manifest.text,
        opset=manifest.opset,
        producer=manifest.producer,
        golden=manifest.golden,
    )


def legacy_manifest(spec: ManifestV2) -> Manifest | None:
    """The v1 manifest of a v2 bundle whose recipe is today's system (the engine's optimised
    path), or None."""
    from alertfusion.manifest import Fusion, Models
    from alertfusion.recipe.v1 import AUDIO_MODEL, GATE_MODEL, TEXT_MODEL, legacy_parts

    parts = legacy_parts(spec.recipe)
    if parts is None or spec.text is None:
        return None
    cfg, labels = parts
    try:
        return Manifest(
            bundle_version=spec.bundle_version,
            created_at=spec.created_at,
            trained=spec.trained,
            description=spec.description,
            labels=labels,
            audio=cfg,
            text=spec.text,
            models=Models(
                audio_binary=spec.models[GATE_MODEL],
                audio_multiclass=spec.models[AUDIO_MODEL],
                text=spec.models[TEXT_MODEL],
            ),
            fusion=Fusion(gate="binary"),
            opset=spec.opset,
            producer=spec.producer,
            golden=spec.golden,
        )
    except ValidationError:
        return None


def parse_manifest(raw: Any, where: str) -> Manifest | ManifestV2:
    """A manifest's JSON value, by its schema_version; BUNDLE_INVALID naming the field."""
    version = raw.get("schema_version", 1) if isinstance(raw, dict) else 1
    cls: type[Manifest] | type[ManifestV2] = ManifestV2 if version == SCHEMA_VERSION_2 else Manifest
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        raise BundleError(
            f"{where} does not match manifest schema v{version}: {exc}",
            code=ReasonCode.BUNDLE_INVALID,
        ) from exc


def load_manifest(path: Path) -> Manifest | ManifestV2:
    """Read and validate a manifest file of either version (v1 exactly as Manifest.load)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return Manifest.load(path)  # its messages and reason codes
    if not isinstance(raw, dict) or raw.get("schema_version") != SCHEMA_VERSION_2:
        return Manifest.load(path)
    return parse_manifest(raw, str(path))


def as_v2(manifest: Manifest | ManifestV2) -> ManifestV2:
    return manifest if isinstance(manifest, ManifestV2) else from_v1(manifest)


def check_bundle_shapes(spec: ManifestV2) -> None:
    """The recipe's graph on its probe signal against the model files' input shapes
    (alertfusion.recipe.graph.check_shapes): BUNDLE_INVALID naming the node or input."""
    from alertfusion.recipe.graph import check_shapes

    check_shapes(spec.recipe, {name: m.input_shapes for name, m in spec.models.items()})


__all__ = [
    "MANIFEST_FILE",
    "AlphabetFile",
    "ManifestV2",
    "ModelFile",
    "as_v2",
    "check_bundle_shapes",
    "from_v1",
    "legacy_manifest",
    "load_manifest",
    "parse_manifest",
]
