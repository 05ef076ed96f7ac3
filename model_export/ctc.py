"""The CTC speech-to-text family (DeepSpeech2 style): PyTorch model, ONNX export, parity.

The sibling system's acoustic model: a log1p |STFT| spectrogram (16 kHz, Hamming 320 / hop
160: 161 bins) through two strided 2-D convolutions (BatchNorm, Hardtanh 0-20, time halved
once), bidirectional LSTM layers (the two directions summed) and a linear layer to the
alphabet, CTC blank at index 0. Exported with a dynamic batch and time axis; the runtime
(alertfusion.stt) decodes greedily in numpy. Parity is judged on what matters: the token ids
of ONNX Runtime's logits decoded by the runtime's decoder must equal PyTorch's own greedy
decode, recording by recording.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from model_export.errors import ExportError, ExportReason

Size = Literal["full", "tiny"]
#: (conv channels, LSTM hidden units, LSTM layers)
Dims = tuple[int, int, int]
#: full is the sibling's 5 x 1024
SIZES: dict[str, Dims] = {"tiny": (4, 32, 2), "full": (32, 1024, 5)}
BLANK = "_"
INPUT = "spectrogram"
OUTPUT = "logits"


def conv_bins(bins: int) -> int:
    """Frequency rows left after the two convolutions."""
    bins = (bins + 2 * 20 - 41) // 2 + 1
    return (bins + 2 * 10 - 21) // 2 + 1


def out_frames(frames: int) -> int:
    """Output frames for `frames` input frames (the first convolution's time stride 2)."""
    return (frames + 2 * 5 - 11) // 2 + 1


class DeepSpeech2(nn.Module):
    """(batch, 1, bins, frames) spectrogram -> (batch, out_frames, symbols) logits; `size` is
    a named size or a checkpoint's own (conv channels, LSTM hidden units, LSTM layers)."""

    def __init__(self, symbols: int, *, bins: int = 161, size: Size | Dims = "tiny") -> None:
        super().__init__()
        channels, hidden, layers = SIZES[size] if isinstance(size, str) else size
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, (41, 11), stride=(2, 2), padding=(20, 5)),
            nn.BatchNorm2d(channels),
            nn.Hardtanh(0, 20),
            nn.Conv2d(channels, channels, (21, 11), stride=(2, 1), padding=(10, 5)),
            nn.BatchNorm2d(channels),
            nn.Hardtanh(0, 20),
        )
        self.hidden = hidden
        width = channels * conv_bins(bins)
        self.rnns = nn.ModuleList(
            nn.LSTM(width if i == 0 else hidden, hidden, batch_first=True, bidirectional=True)
            for i in range(layers)
        )
        self.norm = nn.LayerNorm(hidden)
        self.fc = nn.Linear(hidden, symbols)

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        x = self.conv(spectrogram)
        batch, channels, bins, frames = x.shape
        x = x.reshape(batch, channels * bins, frames).transpose(1, 2)
        for rnn in self.rnns:
            x, _ = rnn(x)
            x = x[..., : self.hidden] + x[..., self.hidden :]  # the two directions summed
        out: torch.Tensor = self.fc(self.norm(x))
        return out


def torch_greedy(logits: torch.Tensor, blank: int = 0) -> list[int]:
    """PyTorch's own greedy CTC decode of (frames, symbols): the parity reference."""
    best = torch.unique_consecutive(logits.argmax(dim=-1))
    return [int(i) for i in best if int(i) != blank]


def demo_alphabet(size: Size) -> list[str]:
    """Blank, space, then Hangul syllables: the 2,350 common ones (full) or the first 40."""
    from model_export.korean_corpus import common_hangul_syllables

    syllables = common_hangul_syllables()
    return [BLANK, " ", *(syllables if size == "full" else syllables[:40])]


def write_alphabet(symbols: list[str], path: Path) -> None:
    path.write_text(json.dumps({"symbols": symbols}, ensure_ascii=False) + "\n", encoding="utf-8")


def read_alphabet(path: Path) -> list[str]:
    """A character list to package: JSON `{"symbols": [...]}` (as written by write_alphabet)
    or a JSON list, or text with one symbol per line (a line holding one space is the space
    symbol; only line ends are stripped). TOKENIZER_INVALID when it cannot be read, holds an
    empty symbol or lists one twice."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportError(ExportReason.TOKENIZER_INVALID, f"alphabet {path}: {exc}") from exc
    if path.suffix.lower() == ".json":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ExportError(
                ExportReason.TOKENIZER_INVALID, f"alphabet {path}: not JSON ({exc})"
            ) from exc
        symbols = raw.get("symbols") if isinstance(raw, dict) else raw
        if not isinstance(symbols, list) or not all(isinstance(x, str) for x in symbols):
            raise ExportError(
                ExportReason.TOKENIZER_INVALID,
                f'alphabet {path}: needs {{"symbols": [strings]}} or a list of strings',
            )
    else:
        symbols = text.splitlines()
        while symbols and symbols[-1] == "":  # a file's trailing blank lines
            symbols.pop()
    if len(symbols) < 2 or not all(symbols):
        raise ExportError(
            ExportReason.TOKENIZER_INVALID,
            f"alphabet {path}: needs at least the blank and one symbol, none of them empty",
        )
    twice = sorted(x for x, n in Counter(symbols).items() if n > 1)
    if twice:
        raise ExportError(ExportReason.TOKENIZER_INVALID, f"alphabet {path} lists {twice} twice")
    return list(symbols)


def check_alphabet(model: nn.Module, symbols: list[str], bins: int) -> None:
    """Refuse an alphabet that does not match the model's output width."""
    with torch.no_grad():
        width = model(torch.zeros(1, 1, bins, 16)).shape[-1]
    if width != len(symbols):
        raise ExportError(
            ExportReason.VOCAB_MISMATCH,
            f"the alphabet has {len(symbols)} symbols; the model's output has {width}",
        )


def export_ctc(model: nn.Module, bins: int, path: Path) -> None:
    """ONNX with a dynamic batch and time axis."""
    from model_export.onnx_export import OPSET, quiet

    model.eval()
    example = torch.zeros(1, 1, bins, 200)
    with quiet(), torch.no_grad():
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch", 3: "frames"}, OUTPUT: {0: "batch", 1: "steps"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
            external_data=False,
        )


def check_token_parity(
    model: nn.Module, path: Path, inputs: list[np.ndarray], blank: int = 0
) -> tuple[float, int]:
    """Each input (1, 1, bins, frames) through PyTorch and ONNX Runtime: the ONNX logits
    decoded by the runtime's decoder must give PyTorch's token ids exactly (PARITY_FAILED
    otherwise). Returns (max |logit difference|, tokens compared)."""
    from alertfusion.stt import ctc_greedy
    from model_export.onnx_export import ort_session

    session = ort_session(path)
    worst = 0.0
    tokens = 0
    model.eval()
    for i, x in enumerate(inputs):
        with torch.no_grad():
            reference = model(torch.from_numpy(x))[0]
        want = torch_greedy(reference, blank)
        got_logits = session.run([OUTPUT], {INPUT: x})[0][0]
        got = ctc_greedy(got_logits, blank)
        if got != want:
            raise ExportError(
                ExportReason.PARITY_FAILED,
                f"speech-to-text: ONNX decodes input {i} ({x.shape[-1]} frames) to "
                f"{len(got)} tokens that differ from PyTorch's {len(want)}; refused",
            )
        worst = max(worst, float(np.abs(got_logits - reference.numpy()).max()))
        tokens += len(want)
    return worst, tokens
