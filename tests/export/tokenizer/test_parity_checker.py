"""check_against_reference itself: it must catch a wrong tokenizer and explain ties exactly."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest

from model_export.spm_vocab import reference_tokenizer
from model_export.tokenizer import (
    _segmentation_scorer,
    check_against_reference,
    convert_tokenizer,
    read_spm_model,
    reference_encode,
)

pytestmark = pytest.mark.export


def _without_step(tokenizer_json: str, step_type: str) -> str:
    data = json.loads(tokenizer_json)
    steps = data["normalizer"]["normalizers"]
    data["normalizer"]["normalizers"] = [s for s in steps if s["type"] != step_type]
    assert len(data["normalizer"]["normalizers"]) == len(steps) - 1
    return json.dumps(data)


@pytest.mark.parametrize(
    ("step", "affected", "unaffected"),
    [
        ("NFC", [unicodedata.normalize("NFD", "살려주세요 강도야")], ["살려주세요 강도야"]),
        ("Prepend", ["도와주세요", "안녕"], []),
        ("Precompiled", ["ＡＢＣ 도와주세요", "도와\u3000주세요"], ["도와주세요"]),
    ],
)
def test_a_wrong_tokenizer_is_caught(
    kobert_like_model: Path, step: str, affected: list[str], unaffected: list[str]
) -> None:
    broken = _without_step(convert_tokenizer(kobert_like_model).tokenizer_json, step)
    report = check_against_reference(broken, kobert_like_model, None, affected + unaffected)
    assert set(report.mismatches) == set(affected)
    assert report.ties == ()
    assert not report.exact


def test_a_wrong_vocabulary_is_caught(kobert_like_model: Path, legacy_json: Path) -> None:
    # The SentencePiece ids checked against the JSON's: every text with a piece differs.
    plain = convert_tokenizer(kobert_like_model).tokenizer_json
    report = check_against_reference(plain, kobert_like_model, legacy_json, ["도와주세요"])
    assert report.mismatches == ("도와주세요",)


def test_ties_are_exactly_equal_scores(kobert_like_model: Path) -> None:
    proto, _ = read_spm_model(kobert_like_model)
    score = _segmentation_scorer(proto)
    assert score(["▁", ".", ".."]) == score(["▁", "..", "."])
    assert score(["▁", ".", ".."]) != score(["▁", ".", ".", "."])
    # Unknown runs score one unknown node per character.
    assert score(["▁", "漢字"]) == score(["▁", "漢", "字"])


def test_reference_encode_is_the_reference_path(kobert_like_model: Path) -> None:
    text = "도와주세요 " * 40
    ids = reference_encode(kobert_like_model, None, text, max_len=10)
    assert len(ids) == 10
    assert ids == reference_tokenizer(kobert_like_model).encode(text, max_len=10)
    assert ids[0] == 2 and ids[-1] == 3


def test_check_command(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from model_export.tokenizer import main

    assert main(["check", str(tiny_model), "--sentences", "200"]) == 0
    assert "0 mismatches" in capsys.readouterr().out
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model")
    assert main(["check", str(bad)]) == 2
    assert "TOKENIZER_INVALID" in capsys.readouterr().out
