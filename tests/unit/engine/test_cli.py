"""`python -m alertfusion classify`: table, JSON, batches, exit codes and messages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from alertfusion import cli
from alertfusion.result import ClassificationResult
from tests.conftest import REPO, SAMPLES
from tests.unit.engine.conftest import HELP_TEXT, HELP_WAV, LONG_WAV

pytestmark = pytest.mark.unit


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = cli.main(["classify", *(str(a) for a in argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_table_for_one_file(capsys: pytest.CaptureFixture[str], tiny_bundle: Path) -> None:
    code, out, err = run(
        capsys, HELP_WAV, "--text", HELP_TEXT, "--bundle", tiny_bundle, "--gate", "none"
    )
    assert code == 0, err
    first = out.splitlines()[0]
    assert first.startswith(f"{HELP_WAV}: ") and "decided by fusion" in first
    for label in ("regular", "help", "robbery", "sexual", "theft", "violence"):
        assert f"  {label}" in out
    assert "text: used" in out
    assert "UNTRAINED" in err  # the demo bundle says its verdicts mean nothing
    assert "[1/1]" not in err  # no progress for a single file


def test_json_for_one_file(capsys: pytest.CaptureFixture[str], tiny_bundle: Path) -> None:
    code, out, _ = run(capsys, HELP_WAV, "--text", HELP_TEXT, "--bundle", tiny_bundle, "--json")
    assert code == 0
    result = ClassificationResult.model_validate_json(out)
    assert result.model.bundle_version.startswith("demo-tiny")


def test_a_batch_with_progress_and_bad_files(
    capsys: pytest.CaptureFixture[str], tiny_bundle: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    missing = tmp_path / "missing.wav"
    code, out, err = run(
        capsys, HELP_WAV, bad, LONG_WAV, missing, "--bundle", tiny_bundle, "--json"
    )
    assert code == cli.EXIT_BAD_INPUT
    rows = json.loads(out)
    assert [row["file"] for row in rows] == [str(HELP_WAV), str(bad), str(LONG_WAV), str(missing)]
    assert "result" in rows[0] and "result" in rows[2]
    assert len(rows[2]["result"]["windows"]) == 5
    assert rows[1]["error"]["code"] == "UNSUPPORTED_FORMAT"
    assert rows[3]["error"]["code"] == "DECODE_FAILED"
    assert f"error: {bad}: UNSUPPORTED_FORMAT" in err
    assert [line for line in err.splitlines() if line.startswith("[")] == [
        f"[1/4] {HELP_WAV}",
        f"[2/4] {bad}",
        f"[3/4] {LONG_WAV}",
        f"[4/4] {missing}",
    ]


def test_batch_table_has_a_summary(capsys: pytest.CaptureFixture[str], tiny_bundle: Path) -> None:
    code, out, err = run(
        capsys,
        *sorted(SAMPLES.glob("*.wav")),
        "--transcripts",
        SAMPLES / "transcripts.json",
        "--bundle",
        tiny_bundle,
        "--gate",
        "none",
        "--quiet",
    )
    assert code == 0
    summary = out.split("\n\n")[-1].splitlines()
    assert summary[0].split() == ["file", "label", "emergency", "decided", "by", "ms"]
    assert len(summary) == 1 + 4
    assert all("fusion" in line for line in summary[1:])  # every sample had its transcript
    assert "[1/" not in err


def test_text_file(capsys: pytest.CaptureFixture[str], tiny_bundle: Path, tmp_path: Path) -> None:
    text = tmp_path / "t.txt"
    text.write_text(HELP_TEXT, encoding="utf-8")
    code, out, _ = run(
        capsys, HELP_WAV, "--text-file", text, "--bundle", tiny_bundle, "--json", "--gate", "none"
    )
    assert code == 0 and json.loads(out)["text"]["status"] == "used"


def test_text_too_long_is_bad_input(capsys: pytest.CaptureFixture[str], tiny_bundle: Path) -> None:
    code, _, err = run(capsys, HELP_WAV, "--text", "가" * 6000, "--bundle", tiny_bundle)
    assert code == cli.EXIT_BAD_INPUT
    assert "TEXT_TOO_LONG" in err


def test_unreadable_transcripts_are_bad_input(
    capsys: pytest.CaptureFixture[str], tiny_bundle: Path, tmp_path: Path
) -> None:
    (tmp_path / "t.json").write_text("[1, 2]")
    code, _, err = run(
        capsys, HELP_WAV, "--transcripts", tmp_path / "t.json", "--bundle", tiny_bundle
    )
    assert code == cli.EXIT_BAD_INPUT and "transcript" in err


def test_no_bundle_anywhere(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MODEL_BUNDLE", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "_REPO_ROOT", tmp_path)
    code, out, err = run(capsys, HELP_WAV)
    assert code == cli.EXIT_ERROR
    assert "make setup" in err and out == ""


def test_the_default_bundle(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    tiny_bundle: Path,
) -> None:
    monkeypatch.delenv("MODEL_BUNDLE", raising=False)
    monkeypatch.setattr(cli, "_REPO_ROOT", tmp_path / "elsewhere")
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_bundle, tmp_path / "build" / "models" / "demo")
    assert cli.default_bundle() == str(tmp_path / "build" / "models" / "demo")
    monkeypatch.setenv("MODEL_BUNDLE", str(tiny_bundle))
    assert cli.default_bundle() == str(tiny_bundle)
    code, out, _ = run(capsys, HELP_WAV, "--json")
    assert code == 0 and json.loads(out)["model"]["bundle_version"].startswith("demo-tiny")


def test_an_invalid_bundle_is_an_error(
    capsys: pytest.CaptureFixture[str], tiny_bundle: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    (copy / "text.onnx").write_bytes(b"x")
    code, out, err = run(capsys, HELP_WAV, "--bundle", copy)
    assert code == cli.EXIT_ERROR
    assert "BUNDLE_INVALID" in err and out == ""


def test_python_dash_m(tiny_bundle: Path) -> None:
    """The documented command, as a user runs it."""
    env = {**os.environ, "MODEL_BUNDLE": str(tiny_bundle)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "alertfusion",
            "classify",
            "samples/ko-help-16k.wav",
            "--text",
            HELP_TEXT,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("samples/ko-help-16k.wav: ")
    bad = subprocess.run(
        [sys.executable, "-m", "alertfusion", "classify", "README.md"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == cli.EXIT_BAD_INPUT
    assert "UNSUPPORTED_FORMAT" in bad.stderr
