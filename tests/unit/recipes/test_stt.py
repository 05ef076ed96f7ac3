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
from alertfusion.recipe.schema import Recipe, Transcription
from alertfusion.stt import ctc_beam, ctc_greedy, decode_ctc, ids_to_text, read_alphabet
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
        (_set("models.stt.transcription.beam_width", 1), "beam_width"),
        (
            _set("models.stt.transcription", {"family": "whisper", "decoding": "beam"}),
            "beam search is for the CTC family",
        ),
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


def test_beam_search_finds_the_text_greedy_decoding_misses() -> None:
    # two frames, p(blank) 0.6 and p(a) 0.4 each: greedy reads blank, blank -> "" (0.36), but
    # the paths a-a, a-_, _-a all give "a" (0.16 + 0.24 + 0.24 = 0.64)
    logits = np.log(np.array([[0.6, 0.4], [0.6, 0.4]]))
    assert ctc_greedy(logits, blank=0) == []
    assert ctc_beam(logits, blank=0, width=4) == [1]


def _labeling_probabilities(probs: np.ndarray, blank: int) -> dict[tuple[int, ...], float]:
    """Every labeling's probability, by enumerating every path (tiny problems only)."""
    import itertools

    out: dict[tuple[int, ...], float] = {}
    frames, symbols = probs.shape
    for path in itertools.product(range(symbols), repeat=frames):
        label = tuple(ctc_greedy(np.eye(symbols)[list(path)], blank))
        out[label] = out.get(label, 0.0) + float(np.prod(probs[np.arange(frames), path]))
    return out


@pytest.mark.parametrize("seed", range(12))
def test_a_beam_wide_enough_finds_the_most_probable_labeling(seed: int) -> None:
    """Five frames over a blank and two symbols: at most 62 prefixes, so a beam of 64 keeps
    them all and must return the labeling the enumeration of all 243 paths ranks first."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.5, size=(5, 3))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    ranked = sorted(_labeling_probabilities(probs, 0).items(), key=lambda kv: -kv[1])
    if ranked[0][1] - ranked[1][1] < 1e-9:
        pytest.skip("a tie between the two most probable labelings")
    assert tuple(ctc_beam(logits, blank=0, width=64)) == ranked[0][0]


def test_beam_decoding_of_peaked_logits_is_greedy_decoding() -> None:
    best = [0, 3, 3, 0, 3, 2, 2, 1, 0, 0]
    logits = np.full((len(best), 4), -10.0)
    logits[np.arange(len(best)), best] = 10.0
    assert ctc_beam(logits, blank=0, width=8) == ctc_greedy(logits, blank=0) == [3, 3, 2, 1]
    beam = Transcription(family="ctc", decoding="beam", beam_width=4)
    assert decode_ctc(logits, beam) == [3, 3, 2, 1]
    assert decode_ctc(np.log([[0.6, 0.4], [0.6, 0.4]]), beam) == [1]
    assert decode_ctc(np.log([[0.6, 0.4], [0.6, 0.4]]), Transcription()) == []


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
