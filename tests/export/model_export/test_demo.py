"""`model_export demo`: deterministic seeded weights in the original checkpoint formats, the
same build path as `bundle`, honest (untrained) manifests, and the seed path's modules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from alertfusion.manifest import AudioPreprocessing, Manifest
from model_export.calibration import calibration_images
from model_export.demo import (
    DEMO_THRESHOLDS,
    RECIPES,
    build_demo_bundle,
    demo_checkpoint_dir,
    demo_densenet,
    demo_kobert,
    load_demo_checkpoints,
)
from model_export.errors import ExportError, ExportReason
from model_export.onnx_export import compute_threads, ort_session, run_audio, run_text
from model_export.tokenizer import convert_tokenizer
from tests.conftest import SAMPLES
from tests.export.model_export.conftest import leftovers

pytestmark = pytest.mark.export


def test_demo_int8_manifest_is_untrained_with_measured_agreement(tiny_bundle_int8: Path) -> None:
    m = Manifest.load(tiny_bundle_int8 / "manifest.json")
    assert m.trained is False
    assert m.bundle_version == "demo-tiny-seed0-int8"
    for entry in (m.models.audio_binary, m.models.audio_multiclass, m.models.text):
        report = entry.quantization_report
        assert report is not None
        assert report.threshold == DEMO_THRESHOLDS["tiny"]
        assert report.decisive_agreement is not None
        assert report.threshold <= report.decisive_agreement <= 1.0
        assert report.n_decisive is not None and report.near_ties is not None
        assert report.n_decisive + report.near_ties == report.n_inputs
        assert report.max_logit_error is not None and report.max_logit_error > 0
        assert report.max_logit_spread is not None and report.max_logit_spread > 0
        assert entry.parity_max_abs_diff is not None and entry.parity_max_abs_diff <= 1e-4
    assert m.models.audio_binary.quantization_report is not None
    assert m.models.audio_binary.quantization_report.n_inputs == 36
    ckpt = tiny_bundle_int8.parent / m.producer["demo_checkpoints"]
    assert ckpt == demo_checkpoint_dir(tiny_bundle_int8)
    info = json.loads((ckpt / "checkpoints.json").read_text())
    assert info["demo"] is True and info["trained"] is False and info["size"] == "tiny"
    # the bundle names its source checkpoints by their sums
    assert m.models.text.source_checkpoint_sha256 == info["sha256"]["text"]
    assert m.text.source_spm_sha256 == info["sha256"]["spm"]


def test_seed_path_modules_compute_what_the_fp32_bundle_computes(tiny_bundle: Path) -> None:
    m = Manifest.load(tiny_bundle / "manifest.json")
    models = load_demo_checkpoints(demo_checkpoint_dir(tiny_bundle))
    assert models.size == "tiny"
    images = calibration_images(SAMPLES, AudioPreprocessing()).images
    with torch.no_grad():
        for name, module in (
            ("audio_binary", models.audio_binary),
            ("audio_multiclass", models.audio_multiclass),
        ):
            want = module(torch.from_numpy(np.array(images))).numpy()
            got = run_audio(ort_session(tiny_bundle / getattr(m.models, name).file), images)
            np.testing.assert_allclose(got, want, atol=1e-4)
        sequences = [[2, 10, 11, 12, 3], [2, *range(20, 60), 3]]
        want = np.concatenate(
            [
                models.text(
                    torch.tensor([s]),
                    torch.ones(1, len(s), dtype=torch.int64),
                    torch.zeros(1, len(s), dtype=torch.int64),
                ).numpy()
                for s in sequences
            ]
        )
    got = run_text(ort_session(tiny_bundle / m.models.text.file), sequences, pad_id=m.text.pad_id)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_demo_weights_are_deterministic_per_seed(tiny_bundle: Path) -> None:
    cal = calibration_images(SAMPLES, AudioPreprocessing())
    with compute_threads(1):
        a = demo_densenet("tiny", 2, seed=7, cal=cal, recipe=RECIPES["tiny"]).state_dict()
        b = demo_densenet("tiny", 2, seed=7, cal=cal, recipe=RECIPES["tiny"]).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
        spm = load_demo_checkpoints(demo_checkpoint_dir(tiny_bundle)).spm
        tok = convert_tokenizer(spm)
        t1 = demo_kobert("tiny", tok, seed=3, recipe=RECIPES["tiny"]).state_dict()
        t2 = demo_kobert("tiny", tok, seed=3, recipe=RECIPES["tiny"]).state_dict()
        t3 = demo_kobert("tiny", tok, seed=4, recipe=RECIPES["tiny"]).state_dict()
        assert all(torch.equal(t1[k], t2[k]) for k in t1)
        assert not torch.equal(t1["classifier.weight"], t3["classifier.weight"])


def test_demo_logits_are_separated_like_a_trained_models(tiny_bundle: Path) -> None:
    m = Manifest.load(tiny_bundle / "manifest.json")
    images = calibration_images(SAMPLES, AudioPreprocessing()).images
    logits = run_audio(ort_session(tiny_bundle / m.models.audio_multiclass.file), images)
    top2 = np.sort(logits, axis=1)[:, -2:]
    assert np.median(top2[:, 1] - top2[:, 0]) > 1.0  # not near-tied
    assert len(set(logits.argmax(axis=1).tolist())) >= 3  # not one constant answer


def test_demo_refuses_an_existing_bundle_without_force(tiny_bundle: Path) -> None:
    with pytest.raises(ExportError) as info:
        build_demo_bundle(tiny_bundle, size="tiny")
    assert info.value.reason == ExportReason.OUTPUT_EXISTS


def test_demo_never_replaces_a_checkpoint_directory_it_did_not_make(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "model.pt").write_bytes(b"someone's real checkpoint")
    with pytest.raises(ExportError) as info:
        build_demo_bundle(tmp_path / "demo", size="tiny", checkpoints_out=theirs)
    assert info.value.reason == ExportReason.OUTPUT_EXISTS
    assert (theirs / "model.pt").read_bytes() == b"someone's real checkpoint"
    assert leftovers(tmp_path, "demo") == []
