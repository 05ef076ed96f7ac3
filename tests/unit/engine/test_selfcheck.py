"""The self-check on the serving CPU: the CLI, damaged golden sets, and the serving policy
(fp32 fallback, or an engine that refuses to answer)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from alertfusion.cli import main
from alertfusion.engine import Engine
from alertfusion.errors import BundleError, ReasonCode
from alertfusion.selfcheck import SelfCheck, check_before_serving, cpu_info
from tests.bundle_edits import (
    copy_bundle,
    edit_manifest,
    resign_golden,
    rewrite_golden,
    strict_int8,
    with_fallback,
)
from tests.unit.engine.conftest import HELP_TEXT, HELP_WAV

pytestmark = pytest.mark.unit


def _selfcheck(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    from alertfusion import cli

    parsed = cli._parser().parse_args(["selfcheck", *args])
    code = cli._selfcheck(parsed, out, err)
    return code, out.getvalue(), err.getvalue()


def test_cpu_info_reads_the_features_that_choose_int8_kernels() -> None:
    x86 = cpu_info("processor\t: 0\nmodel name\t: Some Xeon\nflags\t\t: fpu avx2 fma avx512f "
                   "avx512_vnni amx_tile amx_int8 sse4_2\n")  # fmt: skip
    assert x86.model == "Some Xeon"
    assert x86.features == ("avx2", "fma", "avx512f", "avx512_vnni", "amx_tile", "amx_int8")
    arm = cpu_info("processor\t: 0\nFeatures\t: fp asimd asimddp i8mm sve\nCPU part\t: 0xd4f\n")
    assert arm.features == ("asimd", "asimddp", "i8mm", "sve")
    assert cpu_info("").model  # never empty


def test_selfcheck_passes_on_the_cpu_that_built_the_bundle(tiny_bundle_int8: Path) -> None:
    code, out, err = _selfcheck("--bundle", str(tiny_bundle_int8))
    assert code == 0, out + err
    assert "PASSED" in out and cpu_info().model in out
    for name in ("audio_binary", "audio_multiclass", "text"):
        assert name in out
    code, out, _ = _selfcheck("--bundle", str(tiny_bundle_int8), "--json")
    report = json.loads(out)
    assert code == 0 and report["passed"] is True
    assert report["cpu"]["model"] == cpu_info().model
    assert {m["model"] for m in report["models"]} == {"audio_binary", "audio_multiclass", "text"}
    for model in report["models"]:
        assert model["disagreements"] == []
        assert model["max_logit_spread"] <= model["limit"]
        # the build's own CPU: only float rounding apart (the build ran the images as a batch)
        assert model["max_build_difference"] <= 1e-4


def test_fp32_bundle_selfcheck_holds_fp32_to_the_parity_tolerance(tiny_bundle: Path) -> None:
    code, out, _ = _selfcheck("--bundle", str(tiny_bundle), "--json")
    report = json.loads(out)
    assert code == 0, out
    for model in report["models"]:
        assert model["quantization"] == "none"
        assert model["max_logit_spread"] <= model["limit"] < 1e-2


@pytest.mark.parametrize("damage", ["missing", "truncated", "changed"])
def test_a_damaged_golden_set_is_bundle_invalid(
    tiny_bundle_int8: Path, tmp_path: Path, damage: str
) -> None:
    bundle = copy_bundle(tiny_bundle_int8, tmp_path)
    golden = bundle / "golden.npz"
    if damage == "missing":
        golden.unlink()
    elif damage == "truncated":
        golden.write_bytes(golden.read_bytes()[:1000])
        resign_golden(bundle, "golden.npz")  # the sums match: the file itself is short
    else:
        data = bytearray(golden.read_bytes())
        data[len(data) // 2] ^= 0xFF
        golden.write_bytes(bytes(data))
    code, out, err = _selfcheck("--bundle", str(bundle))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: BUNDLE_INVALID")
    assert "golden.npz" in err


def test_a_bundle_without_a_golden_set_is_bundle_invalid(
    tiny_bundle_int8: Path, tmp_path: Path
) -> None:
    bundle = copy_bundle(tiny_bundle_int8, tmp_path)
    edit_manifest(bundle, lambda raw: raw.pop("golden"))
    (bundle / "golden.npz").unlink()
    code, _, err = _selfcheck("--bundle", str(bundle))
    assert code == 2 and "BUNDLE_INVALID" in err and "no golden set" in err


def test_a_golden_set_that_disagrees_exits_2_naming_the_inputs(
    tiny_bundle_int8: Path, tmp_path: Path
) -> None:
    bundle = copy_bundle(tiny_bundle_int8, tmp_path)

    def swap(arrays: dict[str, np.ndarray]) -> None:
        # fp32's answer made the class int8 likes least, by a wide margin: no agreement
        logits = arrays["audio_multiclass/fp32"]
        arrays["audio_multiclass/fp32"] = 100.0 * np.eye(logits.shape[1])[logits.argmin(1)]

    rewrite_golden(bundle, swap)
    code, out, _ = _selfcheck("--bundle", str(bundle))
    assert code == 2
    assert "FAILED" in out and "audio_multiclass" in out
    assert "disagrees: input 0" in out and "margin" in out
    code, out, _ = _selfcheck("--bundle", str(bundle), "--json")
    report = json.loads(out)
    failing = [m for m in report["models"] if not m["passed"]]
    assert [m["model"] for m in failing] == ["audio_multiclass"]
    assert failing[0]["disagreements"] and all(d["margin"] > 0 for d in failing[0]["disagreements"])


def test_serving_falls_back_to_fp32_where_the_bundle_carries_it(
    tiny_bundle_int8: Path, tiny_bundle: Path, tmp_path: Path
) -> None:
    bundle = with_fallback(tiny_bundle_int8, tiny_bundle, tmp_path)
    strict_int8(bundle)
    engine = Engine.from_bundle(bundle)
    try:
        readiness = check_before_serving(engine)
        assert readiness.status == "fallback" and readiness.serving
        assert readiness.fallback == ("audio_binary", "audio_multiclass")
        assert engine.unready is None
        # served in fp32, the fallback models are checked against fp32's own tolerance
        again = engine.self_check()
        assert again.passed
        assert [m.quantization for m in again.models] == ["none", "none", "int8_dynamic"]
        result = engine.classify(HELP_WAV, text=HELP_TEXT)
        assert result.model.quantization == {
            "audio_binary": "none",
            "audio_multiclass": "none",
            "text": "int8_dynamic",
        }
        # served by the fp32 models: the same verdict as the fp32 bundle
        fp32 = Engine.from_bundle(tiny_bundle).classify(HELP_WAV, text=HELP_TEXT)
        assert result.windows[0].audio_logits == pytest.approx(fp32.windows[0].audio_logits)
    finally:
        engine.close()


def test_without_a_fallback_the_engine_refuses_to_answer(
    tiny_bundle_int8: Path, tmp_path: Path
) -> None:
    bundle = copy_bundle(tiny_bundle_int8, tmp_path)
    strict_int8(bundle)
    engine = Engine.from_bundle(bundle)
    try:
        readiness = check_before_serving(engine)
        assert readiness.status == "failed" and not readiness.serving
        with pytest.raises(BundleError) as info:
            engine.classify(HELP_WAV)
        assert info.value.code == ReasonCode.SELFCHECK_FAILED
        assert "audio_binary" in info.value.message
    finally:
        engine.close()


def test_a_bundle_from_before_the_selfcheck_still_serves_and_says_so(
    tiny_bundle_int8: Path, tmp_path: Path
) -> None:
    bundle = copy_bundle(tiny_bundle_int8, tmp_path)
    edit_manifest(bundle, lambda raw: raw.pop("golden"))
    (bundle / "golden.npz").unlink()
    engine = Engine.from_bundle(bundle)
    try:
        readiness = check_before_serving(engine)
        assert readiness.status == "unavailable" and readiness.serving
        assert "no golden set" in readiness.detail
        assert engine.classify(HELP_WAV).label
    finally:
        engine.close()


def test_get_engine_runs_the_selfcheck_unless_told_not_to(
    tiny_bundle_int8: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alertfusion.engine import get_engine, reset_engine
    from alertfusion.settings import engine_settings

    monkeypatch.setenv("MODEL_BUNDLE", str(tiny_bundle_int8))
    reset_engine()
    engine_settings.cache_clear()
    try:
        engine = get_engine()
        assert engine.readiness is not None and engine.readiness.status == "passed"
        assert engine.loaded  # the self-check created the sessions
        reset_engine()
        engine_settings.cache_clear()
        monkeypatch.setenv("SELFCHECK", "false")
        assert get_engine().readiness is None
    finally:
        reset_engine()
        engine_settings.cache_clear()


def test_main_dispatches_selfcheck(tiny_bundle_int8: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["selfcheck", "--bundle", str(tiny_bundle_int8)]) == 0
    assert "PASSED" in capsys.readouterr().out


def test_a_restored_sandbox_checks_the_bundle_again_on_its_own_cpu(
    tiny_bundle_int8: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SnapStart: the snapshot's self-check ran on the snapshot host's CPU. A copy restored
    where int8 fails must stop answering; one restored where it passes serves again."""
    from alertfusion.engine import get_engine, reset_engine
    from alertfusion.runtime_hooks import after_restore
    from alertfusion.settings import engine_settings

    monkeypatch.setenv("MODEL_BUNDLE", str(tiny_bundle_int8))
    engine_settings.cache_clear()
    reset_engine()
    try:
        engine = get_engine()
        assert engine.readiness is not None and engine.readiness.status == "passed"
        # restored on a CPU whose int8 misbehaves (simulated: a self-check that fails)
        failing = engine.self_check
        monkeypatch.setattr(engine, "self_check", lambda names=None: _failed(failing(names)))
        after_restore()
        assert engine.readiness.status == "failed" and engine.unready is not None
        with pytest.raises(BundleError):
            engine.classify(HELP_WAV)
        # and restored again on a good one
        monkeypatch.setattr(engine, "self_check", failing)
        after_restore()
        assert engine.readiness.status == "passed" and engine.unready is None
        assert engine.classify(HELP_WAV).label
    finally:
        reset_engine()
        engine_settings.cache_clear()


def _failed(check: SelfCheck) -> SelfCheck:
    """`check` with its first model's tolerance shrunk so that it fails."""
    import dataclasses

    first = dataclasses.replace(check.models[0], tolerance=1e-9)
    return dataclasses.replace(check, models=(first, *check.models[1:]))
