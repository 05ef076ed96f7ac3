"""ONNX Runtime sessions: created lazily, once per process, with the engine's options."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import onnxruntime as ort
import pytest

from alertfusion.engine import Engine, get_engine, reset_engine
from alertfusion.errors import BundleError, ConfigError, ReasonCode
from alertfusion.settings import engine_settings
from tests.conftest import REPO
from tests.unit.engine.conftest import HELP_TEXT, HELP_WAV

pytestmark = pytest.mark.unit


@pytest.fixture
def constructions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every InferenceSession built while the test runs (the model file's name)."""
    made: list[str] = []
    real = ort.InferenceSession

    def counting(model: Any, *args: Any, **kwargs: Any) -> Any:
        made.append(Path(model).name if isinstance(model, str) else "<bytes>")
        return real(model, *args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", counting)
    return made


def test_sessions_are_lazy_and_made_once(tiny_bundle: Path, constructions: list[str]) -> None:
    engine = Engine.from_bundle(tiny_bundle, gate="binary")
    assert constructions == [] and not engine.loaded
    for _ in range(3):
        engine.classify(HELP_WAV)  # no text: the text model is not needed
    assert "text.onnx" not in constructions
    assert sorted(constructions) in (
        ["audio_binary.onnx"],  # the gate stopped every window
        ["audio_binary.onnx", "audio_multiclass.onnx"],
    )
    engine.classify(HELP_WAV, text=HELP_TEXT, gate="none")
    engine.classify(HELP_WAV, text=HELP_TEXT, gate="none")
    engine.warm_up()
    assert engine.loaded
    assert sorted(constructions) == ["audio_binary.onnx", "audio_multiclass.onnx", "text.onnx"]
    engine.close()


def test_concurrent_first_calls_make_each_session_once(
    tiny_bundle: Path, constructions: list[str]
) -> None:
    engine = Engine.from_bundle(tiny_bundle, gate="none")
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            barrier.wait()
            engine.classify(HELP_WAV, text=HELP_TEXT)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(constructions) == ["audio_binary.onnx", "audio_multiclass.onnx", "text.onnx"]
    engine.close()


def test_warm_up_creates_everything(tiny_bundle: Path, constructions: list[str]) -> None:
    engine = Engine.from_bundle(tiny_bundle)
    engine.warm_up()
    assert engine.loaded
    assert set(engine.sessions.created_ms) == {"audio_binary", "audio_multiclass", "text"}
    engine.warm_up()
    assert len(constructions) == 3
    engine.close()


def test_sessions_use_the_engine_threads(tiny_bundle: Path) -> None:
    assert Engine.from_bundle(tiny_bundle).sessions.options.intra_op_threads >= 1
    assert Engine.from_bundle(tiny_bundle, threads=2).sessions.options.intra_op_threads == 2


def test_get_engine_is_process_wide_and_reads_the_settings(
    tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch, constructions: list[str]
) -> None:
    monkeypatch.setenv("MODEL_BUNDLE", str(tiny_bundle))
    monkeypatch.setenv("FUSION_GATE", "none")
    monkeypatch.setenv("MAX_TEXT_CHARS", "100")
    # the self-check (on by default) creates the sessions: tests/unit/engine/test_selfcheck.py
    monkeypatch.setenv("SELFCHECK", "false")
    engine_settings.cache_clear()
    reset_engine()
    try:
        engine = get_engine()
        assert get_engine() is engine
        assert engine.gate == "none" and engine.max_text_chars == 100
        assert constructions == []  # getting the engine does not load a model
    finally:
        reset_engine()
        engine_settings.cache_clear()


def test_get_engine_without_a_bundle_setting_fails_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MODEL_BUNDLE", raising=False)
    engine_settings.cache_clear()
    reset_engine()
    try:
        with pytest.raises(ConfigError) as err:
            get_engine()
        assert "MODEL_BUNDLE" in err.value.message
    finally:
        engine_settings.cache_clear()


def test_get_engine_with_a_missing_bundle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODEL_BUNDLE", str(tmp_path / "none"))
    engine_settings.cache_clear()
    reset_engine()
    try:
        with pytest.raises(BundleError) as err:
            get_engine()
        assert err.value.code == ReasonCode.BUNDLE_NOT_FOUND
    finally:
        reset_engine()
        engine_settings.cache_clear()


def test_importing_the_engine_loads_no_heavy_module() -> None:
    """Light routes import alertfusion.engine (for get_engine) without paying for numpy,
    onnxruntime or tokenizers."""
    code = (
        "import sys, alertfusion.engine, alertfusion.bundle, alertfusion.cli;"
        "heavy = [m for m in ('numpy', 'onnxruntime', 'tokenizers', 'soundfile', 'av', 'boto3')"
        " if m in sys.modules]; print(heavy); raise SystemExit(1 if heavy else 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
