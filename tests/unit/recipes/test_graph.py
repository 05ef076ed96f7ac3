"""The feature graph: windows and their tail policies, model input layouts, and the emergency
image described as a graph giving exactly the feature image's bits (alertfusion.features)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alertfusion.audio import decode_audio
from alertfusion.errors import AudioError, ReasonCode
from alertfusion.features import feature_image, window_spans
from alertfusion.manifest import AudioPreprocessing, Labels
from alertfusion.recipe import schema as s
from alertfusion.recipe.graph import FeatureGraph, layout, plan_windows, window_samples
from alertfusion.recipe.v1 import emergency_recipe
from tests.unit.audio.helpers import FIXTURE_FILES

pytestmark = pytest.mark.unit

SR = 16_000


def _windows(**kw: object) -> s.Windows:
    return s.Windows.model_validate({"mode": "fixed", "seconds": 1.0, **kw})


@pytest.mark.parametrize(
    ("n", "kw", "spans", "pad_to", "dropped"),
    [
        (16_000, {}, [(0, 16_000)], None, 0.0),
        (40_000, {}, [(0, 16_000), (16_000, 32_000), (32_000, 40_000)], None, 0.0),
        # a tail under min_tail_seconds is dropped, unless it is the only window
        (33_000, {}, [(0, 16_000), (16_000, 32_000)], None, 1000 / SR),
        (4_000, {}, [(0, 4_000)], None, 0.0),
        (33_000, {"min_tail_seconds": 0.0}, [(0, 16_000), (16_000, 32_000), (32_000, 33_000)],
         None, 0.0),
        # pad: every window is padded to a whole one
        (40_000, {"tail": "pad"}, [(0, 16_000), (16_000, 32_000), (32_000, 40_000)], 16_000, 0.0),
        (4_000, {"tail": "pad"}, [(0, 4_000)], 16_000, 0.0),
        # overlapping windows: every hop until a window reaches the end
        (28_000, {"hop_seconds": 0.5}, [(0, 16_000), (8_000, 24_000), (16_000, 28_000)],
         None, 0.0),
    ],
)  # fmt: skip
def test_window_plans(
    n: int,
    kw: dict[str, object],
    spans: list[tuple[int, int]],
    pad_to: int | None,
    dropped: float,
) -> None:
    plan = plan_windows(n, _windows(**kw), SR)
    assert (plan.spans, plan.pad_to, plan.dropped_tail_s) == (spans, pad_to, dropped)


def test_whole_clip_is_one_window() -> None:
    plan = plan_windows(123_456, s.Windows(mode="whole"), SR)
    assert plan.spans == [(0, 123_456)] and plan.pad_to is None


def test_consecutive_windows_are_the_feature_images_windows() -> None:
    cfg = AudioPreprocessing()
    windows = s.Windows(seconds=5.0, min_tail_seconds=0.0)
    for n in (1, 220_499, 220_500, 220_501, 1_106_875):
        assert plan_windows(n, windows, 44_100).spans == window_spans(n, cfg)


def test_padding_a_short_window_gives_zeros_after_the_samples() -> None:
    y = np.arange(1, 5, dtype=np.float32)
    out = window_samples(y, (0, 4), 7)
    assert out.tolist() == [1, 2, 3, 4, 0, 0, 0] and out.dtype == np.float32


def test_no_samples_is_a_typed_error() -> None:
    with pytest.raises(AudioError) as info:
        plan_windows(0, _windows(), SR)
    assert info.value.code == ReasonCode.EMPTY_AUDIO


@pytest.mark.parametrize(
    ("shape", "kind", "expected"),
    [
        ((5, 7), "NCHW", (1, 5, 7)),
        ((3, 5, 7), "NCHW", (3, 5, 7)),
        ((5, 7), "NHWC", (5, 7, 1)),
        ((5, 7, 3), "NHWC", (5, 7, 3)),
        ((7,), "NCW", (1, 7)),
        ((5, 7), "NCW", (5, 7)),
        ((5, 7, 3), "flat", (105,)),
    ],
)
def test_layouts(shape: tuple[int, ...], kind: str, expected: tuple[int, ...]) -> None:
    x = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    out = layout(x, kind)
    assert out.shape == expected
    assert np.array_equal(out.reshape(-1), x.reshape(-1))  # no reordering


def test_a_layout_that_does_not_fit_the_rank_is_refused() -> None:
    with pytest.raises(ValueError, match="NCHW"):
        layout(np.zeros(7, np.float32), "NCHW")


CONFIGS = [
    AudioPreprocessing(),
    AudioPreprocessing(mel_transform="zscore_db"),
    AudioPreprocessing(layout="channels"),
    AudioPreprocessing(mel_htk=True),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["default", "zscore_db", "channels", "htk"])
@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.name)
def test_the_emergency_graph_gives_the_feature_image_bit_for_bit(
    path: Path, cfg: AudioPreprocessing
) -> None:
    """The graph of today's image (alertfusion.recipe.v1) runs the generic ops; they share the
    feature image's code and dtypes, so each window's image is the same array."""
    graph = FeatureGraph(emergency_recipe(cfg, Labels()))
    y = decode_audio(path, sample_rate=cfg.sample_rate, min_seconds=0).samples
    for start, end in window_spans(len(y), cfg):
        window = y[start:end]
        try:
            want = feature_image(window, cfg)
        except AudioError:
            with pytest.raises(AudioError):
                graph.run(window, ["image"])
            continue
        got = graph.run(window, ["image"])["image"]
        got = got[np.newaxis] if cfg.layout == "stacked" else got
        assert got.dtype == want.dtype
        assert np.array_equal(got, want)


def test_only_the_nodes_asked_for_are_computed() -> None:
    graph = FeatureGraph(emergency_recipe(AudioPreprocessing(), Labels()))
    values = graph.run(np.zeros(44_100, np.float32), ["mel_z"])
    assert sorted(values) == ["mel", "mel_z", "power", "waveform"]
