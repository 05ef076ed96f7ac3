"""The shipped recipes' feature nodes against the sibling systems' own code, written with
librosa as SIBLING_SEEDS describes it (docs/RECIPES.md), on the sample recordings."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from alertfusion.recipe import schema as s
from alertfusion.recipe.graph import FeatureGraph, plan_windows, window_samples
from tests.export.recipes.test_ops_reference import FILES, _librosa, load
from tests.recipe_bundles import recipe_dict

pytestmark = pytest.mark.export


def _first_window(name: str, y: np.ndarray) -> tuple[FeatureGraph, np.ndarray]:
    recipe = s.Recipe.model_validate(recipe_dict(name))
    plan = plan_windows(len(y), recipe.windows, recipe.sample_rate)
    return FeatureGraph(recipe), window_samples(y, plan.spans[0], plan.pad_to)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_infant_cry_nodes_equal_the_original_code(path: Any) -> None:
    """`mfcc` = librosa.feature.mfcc(y, sr=16000, n_mfcc=13)[:, :188] and `mel_db` =
    amplitude_to_db(melspectrogram(y, sr=16000), ref=np.max)[:, :188] on the first 6 s (zero
    padded): MFCC within 1e-5 of its largest coefficient, mel dB within 1e-3 dB."""
    librosa = _librosa()
    graph, y = _first_window("infant-cry", load(path, 16_000))
    values = graph.run(y, ["mfcc", "mel_db"])
    mfcc = librosa.feature.mfcc(y=y, sr=16_000, n_mfcc=13)[:, :188]
    mel_db = librosa.amplitude_to_db(librosa.feature.melspectrogram(y=y, sr=16_000), ref=np.max)
    assert values["mfcc"].shape == (13, 188) and values["mel_db"].shape == (128, 188)
    assert float(np.abs(values["mfcc"] - mfcc).max()) <= 1e-5 * float(np.abs(mfcc).max())
    assert float(np.abs(values["mel_db"] - mel_db[:, :188]).max()) <= 1e-3


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_dog_bark_mel_db_equals_librosa(path: Any) -> None:
    librosa = _librosa()
    graph, y = _first_window("dog-bark", load(path, 22_050))
    got = graph.run(y, ["mel_db"])["mel_db"]
    want = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=22_050), ref=np.max)
    assert float(np.abs(got - want).max()) <= 1e-3


def _original_emotion_vector(y: np.ndarray, sr: int = 22_050) -> np.ndarray:
    """The speech-emotion system's hand features as its description gives them."""
    librosa = _librosa()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pitch = librosa.yin(y, fmin=100, fmax=1000, sr=sr)
        energy = np.mean(y**2)
        onset = librosa.onset.onset_strength(y=y, sr=sr)
        tempo = librosa.feature.tempo(onset_envelope=onset, sr=sr)[0]
        mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=13)
        delta = librosa.feature.delta(mfcc)
        delta2 = librosa.feature.delta(mfcc, order=2)

    def pad(x: np.ndarray) -> np.ndarray:
        width = [(0, 0)] * (x.ndim - 1) + [(0, max(0, 1000 - x.shape[-1]))]
        return np.pad(x, width)[..., :1000]

    return np.concatenate(
        [pad(pitch), [energy], [tempo], *(pad(m).ravel() for m in (mfcc, delta, delta2))]
    )


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_speech_emotion_vector_equals_the_original_code(path: Any) -> None:
    """The 40,002 values: pitch within 1e-4 relative, energy and tempo equal (tempo exactly),
    MFCC and deltas within 1e-5 of each block's largest magnitude."""
    y = load(path, 22_050)
    graph, window = _first_window("speech-emotion", y)
    got = graph.run(window, ["vector"])["vector"].astype(np.float64)
    want = _original_emotion_vector(window)
    assert got.shape == want.shape == (40_002,)
    pitch_got, pitch_want = got[:1000], want[:1000]
    nonzero = pitch_want != 0
    assert np.array_equal(pitch_got == 0, ~nonzero)
    assert float(np.max(np.abs(pitch_got - pitch_want)[nonzero] / pitch_want[nonzero])) <= 1e-4
    assert got[1000] == pytest.approx(want[1000], rel=1e-6)
    assert got[1001] == want[1001]
    for block in range(3):
        a, b = 1002 + block * 13_000, 1002 + (block + 1) * 13_000
        scale = float(np.abs(want[1002:15002]).max())
        assert float(np.abs(got[a:b] - want[a:b]).max()) <= 1e-5 * scale


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_the_feature_image_honours_mel_htk(path: Any) -> None:
    """A v1 manifest's `mel_htk: true` builds HTK filters, as the librosa reference does (it
    used to build Slaney filters regardless: a silent skew)."""
    from alertfusion.features import build_feature_images
    from alertfusion.manifest import AudioPreprocessing
    from tests.unit.audio.helpers import FEATURE_TOLERANCE, feature_error, reference_images

    y = load(path, 44_100)
    htk = AudioPreprocessing(mel_htk=True)
    fast = build_feature_images(y, htk).images
    assert feature_error(fast, reference_images(y, htk), htk) <= FEATURE_TOLERANCE
    slaney = reference_images(y, AudioPreprocessing())
    assert feature_error(fast, slaney, htk) > 100 * FEATURE_TOLERANCE
