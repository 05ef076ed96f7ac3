"""Progress lines on stderr (elapsed time + step) and the closing summary of a build."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from alertfusion.manifest import Manifest, QuantizationReport


class Progress:
    """Writes `[  12.3s] message` lines; silent when `stream` is None (library use)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.start = time.perf_counter()

    @classmethod
    def to_stderr(cls) -> Progress:
        return cls(sys.stderr)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def __call__(self, message: str) -> None:
        if self.stream is not None:
            print(f"[{self.elapsed:7.1f}s] {message}", file=self.stream, flush=True)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def format_summary(manifest: Manifest, directory: str, seconds: float) -> str:
    """The closing summary: per model its file, size, quantization, parity and agreement."""
    lines = [
        f"bundle {directory} ({'trained' if manifest.trained else 'UNTRAINED demo weights'}, "
        f"version {manifest.bundle_version})"
    ]
    models = manifest.models
    total = 0
    for name, entry in (
        ("audio_binary", models.audio_binary),
        ("audio_multiclass", models.audio_multiclass),
        ("text", models.text),
    ):
        total += entry.size_bytes
        parity = (
            f"parity max|dlogit| {entry.parity_max_abs_diff:.2e}"
            if entry.parity_max_abs_diff is not None
            else "parity n/a"
        )
        size = _mb(entry.size_bytes)
        line = f"  {name:<17} {entry.file:<22} {size:>9}  {entry.quantization:<16} {parity}"
        report = entry.quantization_report
        if report is not None:
            line += f"  {summarize(report)}"
        lines.append(line)
    lines.append(
        f"  tokenizer         {manifest.text.tokenizer_file:<22} vocab {manifest.text.vocab_size}, "
        f"max_len {manifest.text.max_len}"
    )
    lines.append(f"  models total {_mb(total)}; built in {seconds:.1f} s")
    return "\n".join(lines)


def summarize(report: QuantizationReport) -> str:
    """One line: agreement among the decisive inputs, near ties, the largest errors."""
    if report.n_decisive is None:  # a bundle built before the margin rule
        return (
            f"int8 agreement {report.top1_agreement:.2%} on {report.n_inputs} inputs, "
            f"max prob shift {report.max_probability_shift:.4f}"
        )
    agreement = (
        "none decisive"
        if report.decisive_agreement is None
        else f"{report.decisive_agreement:.2%} agree"
    )
    return (
        f"int8 vs fp32 on {report.n_inputs} inputs: {report.n_decisive} decisive ({agreement}), "
        f"{report.near_ties} near ties (threshold {report.threshold:.0%}); largest logit error "
        f"spread {report.max_logit_spread or 0.0:.3g} (L2 {report.max_logit_error or 0.0:.3g}), "
        f"max prob shift {report.max_probability_shift:.4f}"
    )
