"""The manifest a build writes carries every number of docs/REFERENCE_MODEL.md, and the schema
rejects manifests that are wrong (the runtime reads the same schema)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from alertfusion.errors import BundleError, ReasonCode
from alertfusion.manifest import Manifest

pytestmark = pytest.mark.unit


def test_built_manifest_has_the_reference_numbers(tiny_bundle_int8: Path) -> None:
    m = Manifest.load(tiny_bundle_int8 / "manifest.json")
    a = m.audio
    assert (a.sample_rate, a.window_seconds, a.n_fft, a.hop_length) == (44_100, 5.0, 1024, 1024)
    assert (a.n_mels, a.n_mfcc, a.panel_size, a.layout) == (128, 48, (64, 64), "stacked")
    assert (a.mel_norm, a.mel_transform, a.fmax, a.input_shape) == (
        "slaney",
        "zscore",
        22_050.0,
        (1, 192, 64),
    )
    assert m.labels.classes == ["regular", "help", "robbery", "sexual", "theft", "violence"]
    assert m.labels.classes_ko[3] == "강제추행(성범죄)"
    assert m.labels.binary == ["regular", "alert"]
    assert m.text.max_len == 60 and not m.text.pad_to_max_len
    assert (m.fusion.method, m.fusion.gate) == ("l2norm_softmax", "binary")
    assert m.models.audio_binary.input_names == ["image"]
    assert m.models.text.input_names == ["input_ids", "attention_mask", "token_type_ids"]
    assert all(
        e.output_names == ["logits"]
        for e in (m.models.audio_binary, m.models.audio_multiclass, m.models.text)
    )
    assert m.trained is False and m.description.startswith("UNTRAINED demo bundle")
    assert m.opset == 17
    for key in ("torch", "onnx", "onnxruntime", "transformers", "audio_int8", "text_int8"):
        assert m.producer[key]


def _mutations() -> dict[str, Callable[[dict[str, Any]], None]]:
    def set_path(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
        def apply(raw: dict[str, Any]) -> None:
            *parents, last = path.split(".")
            node = raw
            for part in parents:
                node = node[part]
            node[last] = value

        return apply

    def drop(path: str) -> Callable[[dict[str, Any]], None]:
        def apply(raw: dict[str, Any]) -> None:
            *parents, last = path.split(".")
            node = raw
            for part in parents:
                node = node[part]
            del node[last]

        return apply

    return {
        "binary labels are the six classes": set_path(
            "models.audio_binary.labels",
            ["regular", "help", "robbery", "sexual", "theft", "violence"],
        ),
        "sha256 is not hex": set_path("models.text.sha256", "xyz"),
        "file name escapes the bundle": set_path("models.text.file", "../text.onnx"),
        "unknown field": set_path("surprise", 1),
        "future schema": set_path("schema_version", 2),
        "agreement above one": set_path(
            "models.audio_binary.quantization_report.top1_agreement", 1.5
        ),
        "unknown quantization": set_path("models.text.quantization", "int4"),
        "tokenizer sum missing": drop("text.tokenizer_sha256"),
        "zero-byte model": set_path("models.audio_multiclass.size_bytes", 0),
        "unknown mel transform": set_path("audio.mel_transform", "db"),
        "mismatched Korean labels": set_path("labels.classes_ko", ["정상"]),
    }


@pytest.mark.parametrize("case", sorted(_mutations()))
def test_bad_manifests_are_rejected(tiny_bundle_int8: Path, tmp_path: Path, case: str) -> None:
    raw = json.loads((tiny_bundle_int8 / "manifest.json").read_text())
    _mutations()[case](raw)
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(BundleError) as info:
        Manifest.load(path)
    assert info.value.code == ReasonCode.BUNDLE_INVALID


def test_unchanged_manifest_round_trips(tiny_bundle_int8: Path, tmp_path: Path) -> None:
    m = Manifest.load(tiny_bundle_int8 / "manifest.json")
    m.dump(tmp_path / "manifest.json")
    assert Manifest.load(tmp_path / "manifest.json") == m
