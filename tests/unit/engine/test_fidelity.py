"""Fidelity: int8 against fp32 (tiny weights); the seed path is in tests/export/engine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from alertfusion.agreement import Agreement, judge_results, model_tolerances
from alertfusion.engine import Engine, Tuning
from alertfusion.errors import AudioError
from alertfusion.sessions import SessionOptions
from tests.conftest import FIXTURES, SAMPLES

pytestmark = pytest.mark.unit

FIXTURE_FILES = sorted(SAMPLES.glob("*.wav")) + sorted((FIXTURES / "audio").glob("*.wav"))
TRANSCRIPTS: dict[str, str] = json.loads((SAMPLES / "transcripts.json").read_text("utf-8"))


@pytest.fixture(scope="module", params=["kernels", "reference"])
def int8_path(request: pytest.FixtureRequest, tiny_bundle_int8: Path) -> Iterator[Engine]:
    """The int8 bundle on two execution paths: ONNX Runtime's int8 kernels for this CPU, and
    with graph optimisations off, where the QDQ graph runs through float kernels (what
    another CPU's exact integer arithmetic computes, up to rounding): the checks must hold on
    both, since CI does not choose its CPU."""
    tuning = None
    if request.param == "reference":
        tuning = Tuning(session=SessionOptions(optimization="disabled"))
    eng = Engine.from_bundle(tiny_bundle_int8, tuning=tuning)
    yield eng
    eng.close()


def test_int8_agrees_with_fp32_on_every_decisive_decision(
    engine: Engine, int8_path: Engine
) -> None:
    """Every decision of every fixture (each window's gate and label, the window selected,
    the recording's label) agrees where fp32's margin is beyond what the models' measured
    int8 errors can move; near ties are reported, not failed (alertfusion.agreement)."""
    engine_int8 = int8_path
    assert engine_int8.manifest.models.audio_multiclass.quantization != "none"
    tolerances = model_tolerances(engine_int8.manifest)
    judged = Agreement(())
    for path in FIXTURE_FILES:
        text = TRANSCRIPTS.get(path.name)
        for gate in ("none", "binary"):
            try:
                fp32 = engine.classify(path, text=text, gate=gate)
            except AudioError as exc:
                with pytest.raises(AudioError) as err:
                    engine_int8.classify(path, text=text, gate=gate)
                assert err.value.code == exc.code
                continue
            int8 = engine_int8.classify(path, text=text, gate=gate)
            judged += judge_results(fp32, int8, tolerances, name=f"{path.name} gate={gate}")
    assert not judged.disagreements, [d.describe() for d in judged.disagreements]
    # the check has teeth: most decisions are decisive even on the tiny models
    assert len(judged.decisive) > len(judged.decisions) / 2, judged.summary()
