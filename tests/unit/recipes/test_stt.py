"""Speech-to-text in the recipe: the transcribe task and the transcript source are refused with
BUNDLE_INVALID naming the field when they do not fit; greedy CTC decoding in numpy; the
alphabet file is checked against its count."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from alertfusion.errors import BundleError, ReasonCode
from alertfusion.recipe.schema import Recipe
from alertfusion.stt import ctc_greedy, ids_to_text, read_alphabet
from tests.recipe_bundles import RECIPES, recipe_dict

pytestmark = pytest.mark.unit

OFFLINE = "emergency-voice-offline"
Edit = Callable[[dict[str, Any]], None]


def _load(tmp_path: Path, edit: Edit) -> Recipe:
    raw = recipe_dict(OFFLINE)
    edit(raw)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    return Recipe.load(path)


def test_the_offline_recipe_transcribes_with_its_model() -> None:
    recipe = Recipe.load(RECIPES / f"{OFFLINE}.json")
    assert recipe.transcriber == "stt"
    assert recipe.models["stt"].task == "transcribe"
    assert Recipe.load(RECIPES / "emergency-voice.json").transcriber is None


def _set(path: str, value: Any) -> Edit:
    def edit(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = raw
        for p in parents:
            node = node[p]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return edit


_DELETE = object()


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (_set("models.stt.transcription", _DELETE), "transcription"),
        (_set("models.stt.labels", [{"name": "a"}, {"name": "b"}]), "labels"),
        (_set("models.stt.output.kind", "probabilities"), "output.kind"),
        (_set("models.stt.transcription.family", "rnnt"), "family"),
        (_set("transcript_source", "model:text"), "transcript_source"),
        (_set("transcript_source", "model:nothing"), "transcript_source"),
        (_set("transcript_source", "whisper"), "transcript_source"),
        (_set("transcript_source", "aws_transcribe"), "stt not used"),
        (_set("decision.fusion.models", ["audio_multiclass", "text", "stt"]), "transcribes"),
        (_set("models.audio_binary.transcription", {"family": "ctc"}), "transcription"),
        (_set("features.stt_waveform.input", "stft"), "stt_waveform.input"),
        (
            _set(
                "features.stt_pitch",
                {"op": "yin", "input": "stt_waveform", "fmin": 60, "fmax": 400},
            ),  # fmt: skip
            "after a resample",
        ),
        (
            _set(
                "features.stt_mel", {"op": "mel", "input": "stt_stft", "n_mels": 40, "fmax": 10000}
            ),  # fmt: skip
            "fmax <= 8000",
        ),
    ],
)
def test_bad_speech_to_text_recipes_are_refused(tmp_path: Path, edit: Edit, field: str) -> None:
    with pytest.raises(BundleError) as info:
        _load(tmp_path, edit)
    assert info.value.code == ReasonCode.BUNDLE_INVALID
    assert field in info.value.message


def test_greedy_ctc_merges_repeats_and_drops_blanks() -> None:
    # frames' top symbols: 0 3 3 0 3 2 2 1 0 0 -> 3 3 2 1 (a repeat across a blank counts)
    best = [0, 3, 3, 0, 3, 2, 2, 1, 0, 0]
    logits = np.full((len(best), 4), -1.0)
    logits[np.arange(len(best)), best] = 1.0
    assert ctc_greedy(logits, blank=0) == [3, 3, 2, 1]
    assert ctc_greedy(logits, blank=3) == [0, 0, 2, 1, 0]
    assert ctc_greedy(np.zeros((0, 4)), blank=0) == []
    with pytest.raises(ValueError):
        ctc_greedy(np.zeros(4), blank=0)


def test_silence_decodes_to_an_empty_text() -> None:
    logits = np.zeros((50, 5))
    logits[:, 0] = 5.0
    ids = ctc_greedy(logits, blank=0)
    assert ids == [] and ids_to_text(ids, ["_", " ", "가", "나", "다"]) == ""


def test_ids_to_text_collapses_spaces() -> None:
    symbols = ["_", " ", "가", "나"]
    assert ids_to_text([1, 2, 1, 1, 3, 1], symbols) == "가 나"


def test_alphabet_files_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"symbols": ["_", " ", "가"]}), encoding="utf-8")
    assert read_alphabet(path, 3) == ["_", " ", "가"]
    for body, words in [
        ({"symbols": ["_", " ", "가"]}, "manifest"),
        ({"symbols": ["_", "가", "가"]}, "twice"),
        (["_", "가"], "symbols"),
        ({"symbols": ["_", ""]}, "symbols"),
    ]:
        path.write_text(json.dumps(body), encoding="utf-8")
        with pytest.raises(BundleError) as info:
            read_alphabet(path, 4 if words == "manifest" else None)
        assert info.value.code == ReasonCode.BUNDLE_INVALID and words in info.value.message


def test_whisper_chunks_cover_the_recording_with_overlap() -> None:
    from alertfusion.stt_whisper import chunks

    rate = 100
    assert chunks(10 * rate, rate, 5.0) == [(0, 1000)]
    assert chunks(30 * rate, rate, 5.0) == [(0, 3000)]
    assert chunks(70 * rate, rate, 5.0) == [(0, 3000), (2500, 5500), (5000, 7000)]


def test_whisper_chunk_texts_join_where_they_overlap() -> None:
    from alertfusion.stt_whisper import merge

    assert merge([[1, 2, 3, 4], [3, 4, 5, 6]]) == [1, 2, 3, 4, 5, 6]
    assert merge([[1, 2, 3], [9, 8]]) == [1, 2, 3, 9, 8]  # no overlap: nothing dropped
    assert merge([[1, 2, 3], [3, 7]]) == [1, 2, 3, 3, 7]  # one token is not an overlap
    assert merge([]) == []
