"""The seed path: what the original server computed per request, with the same weights.

PyTorch eager fp32 models loaded from the source checkpoints in their original formats
(`model_export.demo.load_demo_checkpoints`), `librosa.load` + librosa features + scikit-image
resize per request (`model_export.reference_features`), the transcript through the original id
path (SentencePiece + gluonnlp vocabulary, `model_export.tokenizer.reference_encode`) padded to
`max_len` 60 with an attention mask, and every model run (the gate off). Unlike the original
server, which fed the whole file as one image, the audio is cut into training's 5-second windows
(the last shorter, every tail kept), so the fidelity comparison with the engine is like for like.
"""

from __future__ import annotations

import io
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alertfusion.manifest import AudioPreprocessing

#: training's sequence length; the original server padded every text to it
SEED_MAX_LEN = 60


@dataclass
class SeedOutput:
    """Every window's raw outputs and the fused probabilities (float64 copies of float32)."""

    binary_logits: np.ndarray  # (N, 2)
    audio_logits: np.ndarray  # (N, 6)
    text_logits: np.ndarray | None  # (6,)
    fused: np.ndarray  # (N, 6): softmax(a/|a| + t/|t|), or softmax(a) without text
    timings_ms: dict[str, float] = field(default_factory=dict)


class SeedPath:
    """The original server's computation (module docstring); load once, call `classify`."""

    def __init__(
        self,
        checkpoints: Path,
        *,
        cfg: AudioPreprocessing | None = None,
        max_len: int = SEED_MAX_LEN,
        threads: int | None = None,
    ) -> None:
        import torch

        from model_export.demo import load_demo_checkpoints
        from model_export.spm_vocab import reference_tokenizer

        if threads:
            torch.set_num_threads(threads)
        self.cfg = cfg or AudioPreprocessing()
        self.max_len = max_len
        models = load_demo_checkpoints(Path(checkpoints))
        self.binary = models.audio_binary.eval()
        self.multiclass = models.audio_multiclass.eval()
        self.text = models.text.eval()
        self.spm = models.spm
        self.pad_id = reference_tokenizer(self.spm).vocab.special_id("padding_token")

    def encode(self, text: str) -> list[int]:
        from model_export.tokenizer import reference_encode

        return reference_encode(self.spm, None, text, max_len=self.max_len)

    def classify(self, audio: bytes | str | Path, text: str | None) -> SeedOutput:
        """Decode -> features -> every model -> fused probabilities, per 5-second window."""
        import torch

        from model_export.reference_features import reference_feature_images, reference_load

        timings: dict[str, float] = {}
        t = time.perf_counter()
        source: Any = io.BytesIO(audio) if isinstance(audio, bytes) else str(audio)
        y = reference_load(source, self.cfg.sample_rate)
        timings["decode"] = _ms(t)
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa: n_fft larger than a short last window
            images = reference_feature_images(y, self.cfg)
        timings["features"] = _ms(t)
        with torch.no_grad():
            t = time.perf_counter()
            x = torch.from_numpy(images)
            binary = self.binary(x)
            audio_logits = self.multiclass(x)
            timings["audio_models"] = _ms(t)
            text_logits = None
            t = time.perf_counter()
            if text is not None and text.strip():
                ids = self.encode(text)
                padded = ids + [self.pad_id] * (self.max_len - len(ids))
                mask = [1] * len(ids) + [0] * (self.max_len - len(ids))
                text_logits = self.text(
                    torch.tensor([padded]),
                    torch.tensor([mask]),
                    torch.zeros(1, self.max_len, dtype=torch.int64),
                )[0]
            timings["text_model"] = _ms(t)
            if text_logits is None:
                fused = torch.softmax(audio_logits, dim=-1)
            else:
                a = audio_logits / audio_logits.norm(dim=-1, keepdim=True)
                fused = torch.softmax(a + text_logits / text_logits.norm(), dim=-1)
        return SeedOutput(
            binary_logits=binary.double().numpy(),
            audio_logits=audio_logits.double().numpy(),
            text_logits=None if text_logits is None else text_logits.double().numpy(),
            fused=fused.double().numpy(),
            timings_ms=timings,
        )


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1e3
