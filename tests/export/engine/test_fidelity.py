"""Fidelity: the fp32 engine against the original server's path (PyTorch + librosa)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from alertfusion.engine import Engine
from alertfusion.errors import AudioError
from alertfusion.manifest import MANIFEST_FILE, AudioPreprocessing
from tests.conftest import FIXTURES, SAMPLES

pytestmark = pytest.mark.export

#: fused probabilities, engine (fp32 ONNX + numpy features) vs seed (PyTorch + librosa)
FUSED_TOLERANCE = 1e-4
FIXTURE_FILES = sorted(SAMPLES.glob("*.wav")) + sorted((FIXTURES / "audio").glob("*.wav"))
TRANSCRIPTS: dict[str, str] = json.loads((SAMPLES / "transcripts.json").read_text("utf-8"))


def _checkpoints(bundle: Path) -> Path:
    from model_export.demo import demo_checkpoint_dir

    return demo_checkpoint_dir(bundle)


@pytest.fixture(scope="module")
def zscore_db_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny fp32 bundle with the original server's mel variant selected in its manifest."""
    out = tmp_path_factory.mktemp("zscore-db") / "bundle"
    shutil.copytree(tiny_bundle, out)
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    manifest["audio"]["mel_transform"] = "zscore_db"
    (out / MANIFEST_FILE).write_text(json.dumps(manifest))
    return out


@pytest.fixture(scope="module")
def engines(tiny_bundle: Path, zscore_db_bundle: Path) -> Iterator[dict[str, Engine]]:
    made = {
        # every window scored, like training and the seed path
        "zscore": Engine.from_bundle(tiny_bundle, gate="none", min_window_seconds=0),
        "zscore_db": Engine.from_bundle(zscore_db_bundle, gate="none", min_window_seconds=0),
    }
    yield made
    for engine in made.values():
        engine.close()


@pytest.mark.slow  # PyTorch and librosa (numba) imports
@pytest.mark.parametrize("mel_transform", ["zscore", "zscore_db"])
def test_fp32_engine_equals_the_seed_path(
    engines: dict[str, Engine], tiny_bundle: Path, mel_transform: str
) -> None:
    from bench.seed import SeedPath

    engine = engines[mel_transform]
    seed = SeedPath(_checkpoints(tiny_bundle), cfg=AudioPreprocessing(mel_transform=mel_transform))
    compared = 0
    for path in FIXTURE_FILES:
        data = path.read_bytes()
        text = TRANSCRIPTS.get(path.name, "도와주세요")
        for t in (text, None):
            try:
                ours = engine.classify(data, text=t)
            except AudioError:
                continue  # too short for the service; the seed path has no such rule
            theirs = seed.classify(data, t)
            classes = engine.manifest.labels.classes
            fused = np.array(
                [
                    [w.probabilities[c] for c in classes]  # type: ignore[index]  # all scored
                    for w in ours.windows
                ]
            )
            assert fused.shape == theirs.fused.shape, path.name
            assert np.abs(fused - theirs.fused).max() <= FUSED_TOLERANCE, path.name
            gate = np.array(
                [w.gate.logits for w in ours.windows]  # type: ignore[union-attr]  # still scored
            )
            assert np.abs(gate - theirs.binary_logits).max() <= 1e-3, path.name
            if t is not None:
                assert ours.text.logits is not None and theirs.text_logits is not None
                assert np.abs(np.array(ours.text.logits) - theirs.text_logits).max() <= 1e-4
                # the seed padded to 60 tokens, the engine ran at the true length
                assert ours.text.n_tokens == len(seed.encode(t)) <= seed.max_len
            compared += 1
    assert compared >= 8


@pytest.mark.slow  # PyTorch and librosa (numba) imports, every fixture through four engines
def test_the_bench_fidelity_phase_reports_both_int8_paths(
    tiny_bundle: Path, tiny_bundle_int8: Path
) -> None:
    """`python -m bench.fidelity`, as `make bench` runs it: one JSON line, the fp32 engine
    within 1e-4 of the seed path, int8 judged by margins on both execution paths."""
    import subprocess
    import sys

    from tests.conftest import REPO

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.fidelity",
            str(tiny_bundle),
            str(tiny_bundle_int8),
            str(_checkpoints(tiny_bundle_int8)),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["fp32_vs_seed_within_1e-4"] is True
    assert set(report["int8_vs_fp32"]) == {"kernels", "reference"}
    for path in report["int8_vs_fp32"].values():
        assert path["decisive"] > 0 and path["disagreements"] == []
        assert path["selfcheck"]["passed"] is True
    assert set(report["int8_tolerances"]["text"]) == {"spread", "l2"}
    assert report["int8_agrees_where_decisive"] is True
