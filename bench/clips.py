"""The benchmark's inputs: a 5 s and a 25 s clip, 100 distinct 5 s clips, a ~20-token text.

All come from the committed samples (16 kHz speech, so decoding includes resampling to 44.1 kHz
as it does for phone recordings). The 100 throughput clips are 5 s slices at different offsets
of the samples with a little seeded noise, so no two inputs are the same.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
#: the transcript every timed request carries (~20 tokens with the demo tokenizer)
BENCH_TEXT = "도와주세요. 여기 사람이 쓰러졌어요. 빨리 와주세요. 경찰도요."
SOURCE_RATE = 16_000
THROUGHPUT_CLIPS = 100


def _wav(samples: np.ndarray, rate: int) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _source() -> np.ndarray:
    """The 25 s sample's samples (16 kHz mono float)."""
    import soundfile as sf

    y, rate = sf.read(SAMPLES / "ko-violence-long-16k.wav", dtype="float32", always_2d=False)
    assert rate == SOURCE_RATE and y.ndim == 1
    return np.asarray(y)


def write_clips(directory: Path) -> dict[str, Path]:
    """Write clip_5s.wav, clip_25s.wav and throughput/NNN.wav into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    y = _source()
    n5, n25 = 5 * SOURCE_RATE, 25 * SOURCE_RATE
    out = {"clip_5s": directory / "clip_5s.wav", "clip_25s": directory / "clip_25s.wav"}
    out["clip_5s"].write_bytes(_wav(y[:n5], SOURCE_RATE))
    out["clip_25s"].write_bytes(_wav(y[:n25], SOURCE_RATE))
    tp = directory / "throughput"
    tp.mkdir(exist_ok=True)
    rng = np.random.default_rng(20240611)
    for i in range(THROUGHPUT_CLIPS):
        start = int(rng.integers(0, len(y) - n5))
        clip = y[start : start + n5] * rng.uniform(0.5, 1.0)
        clip = clip + rng.normal(0, 1e-3, n5)
        (tp / f"{i:03d}.wav").write_bytes(_wav(np.clip(clip, -1, 1), SOURCE_RATE))
    out["throughput"] = tp
    return out


def fixture_files() -> list[Path]:
    """Every committed recording the fidelity checks run on."""
    return sorted(SAMPLES.glob("*.wav")) + sorted(
        (REPO / "tests" / "fixtures" / "audio").glob("*.wav")
    )
