"""Every recipe op against its reference, with the tolerance stated per test.

References: librosa 0.11 (stft, mel filters, dB, MFCC, delta, yin, onset strength, tempo),
scikit-image (resize), scikit-learn (StandardScaler), numpy (the rest). torchaudio cannot be
installed beside this PyTorch build, so its conventions (the speaker-gender recipe: periodic
Hann, reflect padding, HTK mel without filter normalisation, AmplitudeToDB, create_dct, the
per-coefficient z-score with an unbiased, clamped std) are checked two ways: against librosa
with the equivalent options (htk=True, norm=None, pad_mode="reflect"), and against
torchaudio's formulas written out here in PyTorch (torch.stft is what torchaudio's
Spectrogram calls).

Tolerances are relative to the reference's largest magnitude unless said otherwise: the
runtime computes in float32 where librosa does (its FFTs, its filters), so differences are a
few float32 rounding steps.
"""

from __future__ import annotations

import math
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from alertfusion.recipe import schema as s
from alertfusion.recipe.graph import FeatureGraph, window_samples
from alertfusion.recipe.ops import Context, apply
from tests.conftest import SAMPLES

pytestmark = pytest.mark.export

REL = 1e-5  # float32 spectra
FILES = sorted(SAMPLES.glob("*.wav"))


def _librosa() -> Any:
    from model_export.reference_features import _librosa

    return _librosa()


@cache
def load(path: Path, sr: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y: np.ndarray = _librosa().load(str(path), sr=sr, mono=True, res_type="soxr_hq")[0]
    return y[: 4 * sr]


def signals(sr: int) -> list[np.ndarray]:
    t = np.arange(sr) / sr
    rng = np.random.default_rng(0)
    made = [
        (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32),
        (0.1 * rng.standard_normal(sr)).astype(np.float32),
        np.zeros(sr // 2, np.float32),
    ]
    return [*(load(p, sr) for p in FILES), *made]


def rel_error(got: np.ndarray, want: np.ndarray) -> float:
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = max(float(np.abs(want).max()), 1e-30)
    return float(np.abs(got.astype(np.float64) - want).max()) / scale


def run(node: s.Node, *args: np.ndarray, sr: int = 16_000, nodes: dict | None = None) -> np.ndarray:
    return apply(node, list(args), Context(sr, nodes or {}))


def stft_node(**kw: Any) -> s.Stft:
    return s.Stft.model_validate({"op": "stft", "input": "waveform", **kw})


STFTS = [
    {"n_fft": 1024, "hop_length": 1024},
    {"n_fft": 2048, "hop_length": 512, "power": 2.0},
    {"n_fft": 320, "hop_length": 320, "pad_mode": "reflect", "power": 2.0},
    {"n_fft": 320, "hop_length": 160, "window": "hamming", "periodic": False},
    {"n_fft": 512, "hop_length": 128, "win_length": 400, "center": False},
    {"n_fft": 400, "hop_length": 160, "window": "hamming", "pad_mode": "reflect"},
]


@pytest.mark.parametrize("kw", STFTS, ids=lambda kw: "-".join(f"{v}" for v in kw.values()))
def test_stft_equals_librosa(kw: dict[str, Any]) -> None:
    """|librosa.stft|**power with the same window (scipy's get_window, fftbins=periodic),
    centring and padding: within 1e-5 of the largest value."""
    librosa = _librosa()
    node = stft_node(**kw)
    window: Any = node.window  # librosa's get_window: periodic
    if not node.periodic:
        import scipy.signal

        window = scipy.signal.get_window(node.window, node.win_length or node.n_fft, fftbins=False)
    for y in signals(16_000):
        want = (
            np.abs(
                librosa.stft(
                    y,
                    n_fft=node.n_fft,
                    hop_length=node.hop_length,
                    win_length=node.win_length,
                    window=window,
                    center=node.center,
                    pad_mode=node.pad_mode,
                )
            )
            ** node.power
        )
        got = run(node, y)
        assert rel_error(got, want) <= REL


@pytest.mark.parametrize("scale", ["slaney", "htk"])
@pytest.mark.parametrize("norm", ["slaney", None])
@pytest.mark.parametrize(("sr", "n_fft", "n_mels", "fmin", "fmax"), [
    (16_000, 2048, 128, 0.0, None), (16_000, 320, 128, 0.0, None), (44_100, 1024, 128, 0.0, None),
    (22_050, 2048, 40, 50.0, 8000.0),
])  # fmt: skip
def test_mel_filters_equal_librosa(
    scale: str, norm: str | None, sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None
) -> None:
    """librosa.filters.mel(htk=scale == "htk", norm): within 1e-6 of the largest weight."""
    from alertfusion import dsp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa warns about empty filters at n_fft 320
        want = _librosa().filters.mel(
            sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=scale == "htk", norm=norm
        )
    got = dsp.mel_filters(sr, n_fft, n_mels, fmin, fmax or sr / 2, scale, norm)
    assert got.dtype == np.float32
    assert rel_error(got, want) <= 1e-6


def test_melspectrogram_equals_librosa() -> None:
    librosa = _librosa()
    nodes: dict[str, s.Node] = {"power": stft_node(n_fft=2048, hop_length=512, power=2.0)}
    mel = s.Mel(op="mel", input="power", n_mels=128)
    for y in signals(16_000):
        power = run(nodes["power"], y)
        want = librosa.feature.melspectrogram(y=y, sr=16_000)
        assert rel_error(run(mel, power, nodes=nodes), want) <= REL


DBS = [
    {"kind": "power", "ref": 1.0, "amin": 1e-10, "top_db": 80.0},
    {"kind": "power", "ref": "max", "amin": 1e-10, "top_db": 80.0},
    {"kind": "power", "ref": 2.0, "amin": 1e-6, "top_db": None},
    {"kind": "amplitude", "ref": "max", "amin": 1e-5, "top_db": 80.0},
    {"kind": "amplitude", "ref": 1.0, "amin": 1e-5, "top_db": 60.0},
]


@pytest.mark.parametrize("kw", DBS, ids=lambda kw: "-".join(f"{v}" for v in kw.values()))
def test_db_equals_librosa(kw: dict[str, Any]) -> None:
    """power_to_db / amplitude_to_db (ref a number or np.max): within 1e-3 dB."""
    librosa = _librosa()
    node = s.Db.model_validate({"op": "db", "input": "mel", **kw})
    ref = np.max if kw["ref"] == "max" else kw["ref"]
    convert = librosa.power_to_db if kw["kind"] == "power" else librosa.amplitude_to_db
    for y in signals(16_000):
        mel = librosa.feature.melspectrogram(y=y, sr=16_000)
        want = convert(mel, ref=ref, amin=kw["amin"], top_db=kw["top_db"])
        got = run(node, mel)
        assert got.dtype == want.dtype
        assert float(np.abs(got - want).max()) <= 1e-3


def test_mfcc_equals_librosa() -> None:
    """librosa.feature.mfcc (DCT-II ortho of power_to_db of the mel power): within 1e-5 of the
    largest coefficient (the runtime's DCT is a float64 matrix, librosa's a float32 FFT)."""
    librosa = _librosa()
    node = s.Mfcc(op="mfcc", input="db", n_mfcc=13)
    for y in signals(16_000):
        db = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=16_000))
        want = librosa.feature.mfcc(y=y, sr=16_000, n_mfcc=13)
        assert rel_error(run(node, db), want) <= REL


@pytest.mark.parametrize(("width", "order"), [(9, 1), (9, 2), (5, 1), (3, 1), (7, 3)])
def test_delta_equals_librosa(width: int, order: int) -> None:
    """librosa.feature.delta (savgol_filter, mode interp): within 1e-5 of the input's largest
    magnitude (a constant input's delta is rounding noise around 0 in both)."""
    librosa = _librosa()
    node = s.Delta(op="delta", input="m", width=width, order=order)
    for y in signals(22_050):
        mfcc = librosa.feature.mfcc(y=y, sr=22_050, n_mfcc=13)
        want = librosa.feature.delta(mfcc, width=width, order=order)
        got = run(node, mfcc)
        assert got.shape == want.shape
        assert float(np.abs(got - want).max()) <= REL * float(np.abs(mfcc).max())


def test_savgol_coefficients_equal_scipy() -> None:
    import scipy.signal

    from alertfusion.recipe.ops import savgol_coefficients

    for width in (3, 5, 9, 11):
        for order in (1, 2, 3):
            if order < width:
                want = scipy.signal.savgol_coeffs(width, order, deriv=order, use="dot")
                assert np.allclose(savgol_coefficients(width, order), want, atol=1e-12)


@pytest.mark.parametrize("shape", [(128, 216), (13, 188), (513, 20), (128, 431, 3), (7, 5, 3)])
@pytest.mark.parametrize("size", [(64, 64), (224, 224), (10, 100)])
def test_resize_equals_scikit_image(shape: tuple[int, ...], size: tuple[int, int]) -> None:
    """skimage.transform.resize with its defaults (per channel for (H, W, C)): within 1e-5 of
    the input's range (the runtime resizes in float32)."""
    from skimage.transform import resize

    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32) * 5.0
    x[0] += 10.0  # a ramp in places, as spectrogram rows have
    want = resize(x.astype(np.float64), size)
    got = run(s.Resize(op="resize", input="x", size=size), x)
    assert got.shape == want.shape
    assert float(np.abs(got - want).max()) <= 1e-5 * float(x.max() - x.min())


def test_zscore_and_affine_match_numpy_and_scikit_learn() -> None:
    from sklearn.preprocessing import StandardScaler

    from model_export.recipe_build import fitted_scalers

    rng = np.random.default_rng(2)
    x = rng.standard_normal((13, 188)).astype(np.float32) * 3 + 1
    whole = s.Zscore(op="zscore", input="x", eps=1e-8)
    assert np.allclose(run(whole, x), (x - x.mean()) / (x.std() + 1e-8), atol=1e-6)
    per_row = s.Zscore(op="zscore", input="x", axes=[-1], ddof=1, clamp=1e-5)
    want = (x - x.mean(-1, keepdims=True)) / np.maximum(x.std(-1, ddof=1, keepdims=True), 1e-5)
    assert np.allclose(run(per_row, x), want, atol=1e-6)
    # a StandardScaler fitted on X.reshape(-1, 188), as the infant-cry training did
    windows = [rng.standard_normal(16_000 * 6).astype(np.float32) * 0.1 for _ in range(3)]
    recipe = s.Recipe.model_validate(
        {
            "name": "scaler",
            "sample_rate": 16_000,
            "windows": {"seconds": 6.0, "tail": "pad"},
            "features": {
                "waveform": {"op": "waveform"},
                "power": {"op": "stft", "input": "waveform", "n_fft": 2048, "hop_length": 512},
                "mel": {"op": "mel", "input": "power", "n_mels": 20},
                "scaled": {"op": "affine", "input": "mel", "mean": None, "scale": None},
            },
            "models": {
                "m": {
                    "inputs": {"x": {"node": "scaled", "layout": "NCW"}},
                    "labels": [{"name": "a"}, {"name": "b"}],
                }
            },
            "decision": {"fusion": {"method": "single", "models": ["m"]}, "aggregate": "mean"},
        }
    )
    graph = FeatureGraph(recipe)
    mels = np.stack([graph.run(w, ["mel"])["mel"] for w in windows])
    scaler = StandardScaler().fit(mels.reshape(-1, mels.shape[-1]))
    mean, scale = fitted_scalers(recipe, windows)["scaled"]
    assert np.allclose(mean, scaler.mean_, rtol=1e-12) and np.allclose(scale, scaler.scale_)
    node = s.Affine(op="affine", input="mel", mean=mean, scale=scale)
    want = scaler.transform(mels[0].astype(np.float32))
    assert np.allclose(run(node, mels[0]), want, rtol=1e-6, atol=1e-6)


def test_frames_colormap_stack_concat_energy_follow_their_formulas() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert run(s.Frames(op="frames", input="x", n=2), x).tolist() == x[:, :2].tolist()
    padded = run(s.Frames(op="frames", input="x", n=6, pad_value="min"), x)
    assert padded[:, 4:].tolist() == [[0, 0]] * 3 and padded[:, :4].tolist() == x.tolist()
    table = [(i, 255 - i, i // 2) for i in range(256)]
    colour = run(s.Colormap(op="colormap", input="x", table=table), x)
    index = np.minimum(np.floor((x - 0) / 11 * 256), 255).astype(int)
    assert colour.shape == (3, 4, 3) and colour.tolist() == np.asarray(table)[index].tolist()
    fixed = run(s.Colormap(op="colormap", input="x", table=table, vmin=-10.0, vmax=30.0), x)
    assert fixed[0, 0].tolist() == list(table[64])  # (0 + 10) / 40 * 256
    a, b = np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)
    assert run(s.Stack(op="stack", inputs=["a", "b"], axis=0), a, b).shape == (2, 2, 3)
    flat = run(s.Concat(op="concat", inputs=["a", "b"], flatten=True), a, b)
    assert flat.tolist() == [1.0] * 6 + [0.0] * 6
    y = np.random.default_rng(3).standard_normal(1000).astype(np.float32)
    assert run(s.Energy(op="energy", input="y"), y).tolist() == [np.mean(y**2)]
    assert np.array_equal(run(s.Log1p(op="log1p", input="y"), np.abs(y)), np.log1p(np.abs(y)))


def test_yin_equals_librosa() -> None:
    """librosa.yin(fmin 100, fmax 1000): the same period on every frame, f0 within 1e-4 relative
    (thresholded troughs and parabolic shifts are the same computation)."""
    librosa = _librosa()
    node = s.Yin(op="yin", input="y", fmin=100.0, fmax=1000.0)
    for y in signals(22_050):
        want = librosa.yin(y, fmin=100.0, fmax=1000.0, sr=22_050)
        got = run(node, y, sr=22_050)
        assert got.shape == want.shape
        assert float(np.max(np.abs(got - want) / want)) <= 1e-4


def test_onset_strength_and_tempo_equal_librosa() -> None:
    """onset_strength within 1e-4 dB of librosa's; the tempo exactly librosa's (an argmax over
    the same tempogram bins)."""
    librosa = _librosa()
    sr = 22_050
    nodes: dict[str, s.Node] = {
        "power": stft_node(n_fft=2048, hop_length=512, power=2.0),
        "mel": s.Mel(op="mel", input="power", n_mels=128),
    }
    onset = s.OnsetStrength(op="onset_strength", input="db")
    tempo = s.Tempo(op="tempo", input="onset")
    clicks = np.zeros(sr * 6, np.float32)
    clicks[:: sr // 2] = 1.0  # 120 BPM
    for y in [*signals(sr), clicks]:
        mel = run(nodes["mel"], run(nodes["power"], y, sr=sr), sr=sr, nodes=nodes)
        db = run(s.Db(op="db", input="mel"), mel)
        want = librosa.onset.onset_strength(y=y, sr=sr)
        got = run(onset, db, sr=sr)
        assert float(np.abs(got - want).max()) <= 1e-4
        want_bpm = librosa.feature.tempo(onset_envelope=want, sr=sr)
        assert run(tempo, got, sr=sr).tolist() == want_bpm.tolist()


def test_next_fast_len_equals_scipy() -> None:
    import scipy.fft

    from alertfusion.recipe.rhythm import next_fast_len

    assert [next_fast_len(n) for n in range(1, 5000)] == [
        scipy.fft.next_fast_len(n, real=True) for n in range(1, 5000)
    ]


# ------------------------------------------------------------------ torchaudio's conventions


def _torchaudio_mfcc(y: np.ndarray) -> np.ndarray:
    """torchaudio.transforms.MFCC(16000, n_mfcc 128, melkwargs n_fft 320, hop 320, n_mels 128)
    as its source computes it, in PyTorch float32, then the per-coefficient z-score."""
    import torch

    x = torch.from_numpy(y)
    n_fft, sr, n_mels = 320, 16_000, 128
    spec = torch.stft(
        x, n_fft, hop_length=320, win_length=n_fft, window=torch.hann_window(n_fft),
        center=True, pad_mode="reflect", normalized=False, onesided=True, return_complex=True,
    ).abs().pow(2.0)  # fmt: skip
    # melscale_fbanks(n_freqs, 0, sr/2, n_mels, sr, norm=None, mel_scale="htk")
    all_freqs = torch.linspace(0, sr // 2, n_fft // 2 + 1)
    m_min, m_max = (2595.0 * math.log10(1.0 + f / 700.0) for f in (0.0, sr / 2))
    m_pts = torch.linspace(m_min, m_max, n_mels + 2)
    f_pts = 700.0 * (10 ** (m_pts / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)
    down = (-1.0 * slopes[:, :-2]) / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    fb = torch.max(torch.zeros(1), torch.min(down, up))
    mel = torch.matmul(spec.transpose(-1, -2), fb).transpose(-1, -2)
    # AmplitudeToDB("power", top_db=80): amin 1e-10, ref 1
    db = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))
    db = torch.max(db, db.amax() - 80.0)
    # create_dct(n_mfcc, n_mels, "ortho")
    n = torch.arange(float(n_mels))
    k = torch.arange(float(n_mels)).unsqueeze(1)
    dct = torch.cos(math.pi / float(n_mels) * (n + 0.5) * k)
    dct[0] *= 1.0 / math.sqrt(2.0)
    dct *= math.sqrt(2.0 / float(n_mels))
    mfcc = torch.matmul(db.transpose(-1, -2), dct.t()).transpose(-1, -2)
    z = (mfcc - mfcc.mean(dim=-1, keepdim=True)) / mfcc.std(dim=-1, keepdim=True).clamp(min=1e-5)
    return np.asarray(z.numpy(), dtype=np.float64)


def test_speaker_gender_features_equal_torchaudios_formulas() -> None:
    """The speaker-gender recipe's `mfcc` node against torchaudio's MFCC and z-score written
    out in PyTorch (float32 there and here): within 1e-3 absolute on the z-scored values (the
    mel points are float32 in torchaudio, float64 here; both round to float32 filters)."""
    from alertfusion.recipe.graph import plan_windows
    from tests.recipe_bundles import recipe_dict

    recipe = s.Recipe.model_validate(recipe_dict("speaker-gender"))
    graph = FeatureGraph(recipe)
    for path in FILES:
        y = load(path, 16_000)
        plan = plan_windows(len(y), recipe.windows, 16_000)
        window = window_samples(y, plan.spans[0], plan.pad_to)
        got = graph.run(window, ["mfcc"])["mfcc"]
        want = _torchaudio_mfcc(window)
        assert got.shape == want.shape == (128, 301)
        assert float(np.abs(got - want).max()) <= 1e-3


def test_speaker_gender_spectra_equal_librosa_with_equivalent_options() -> None:
    """Before the z-score: librosa with htk=True, norm=None, center, pad_mode="reflect",
    power_to_db(top_db 80), DCT-II ortho: within 1e-5 of the largest coefficient."""
    librosa = _librosa()
    from tests.recipe_bundles import recipe_dict

    recipe = s.Recipe.model_validate(recipe_dict("speaker-gender"))
    graph = FeatureGraph(recipe)
    for path in FILES:
        y = np.zeros(96_000, np.float32)
        clip = load(path, 16_000)[:96_000]
        y[: len(clip)] = clip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mel = librosa.feature.melspectrogram(
                y=y, sr=16_000, n_fft=320, hop_length=320, n_mels=128, htk=True, norm=None,
                center=True, pad_mode="reflect", power=2.0,
            )  # fmt: skip
        want = librosa.feature.mfcc(S=librosa.power_to_db(mel, top_db=80.0), n_mfcc=128)
        got = graph.run(y, ["mfcc_raw"])["mfcc_raw"]
        assert rel_error(got, want) <= REL
