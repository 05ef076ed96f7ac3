"""Fidelity on the full-size demo weights, in the benchmark's run.

    python -m bench.fidelity FP32_BUNDLE INT8_BUNDLE CHECKPOINTS

* the engine with the fp32 bundle against the seed path (PyTorch + librosa, same weights, same
  mel variant): max |fused probability difference| over every window of every fixture, with and
  without its transcript (every window scored on both sides, as in training);
* the engine with the int8 bundle against the fp32 bundle: the verdict (top-1) on every
  fixture, with the gate off and on.
Prints one JSON object.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def main(argv: list[str]) -> int:
    from alertfusion.engine import Engine
    from alertfusion.errors import AudioError
    from bench.clips import REPO, fixture_files
    from bench.seed import SeedPath

    fp32_dir, int8_dir, checkpoints = (Path(a) for a in argv)
    transcripts = json.loads((REPO / "samples" / "transcripts.json").read_text("utf-8"))
    fp32 = Engine.from_bundle(fp32_dir, gate="none", min_window_seconds=0)
    seed = SeedPath(checkpoints, cfg=fp32.manifest.audio)
    classes = fp32.manifest.labels.classes
    worst, windows, files = 0.0, 0, []
    for path in fixture_files():
        data = path.read_bytes()
        for text in (transcripts.get(path.name), None):
            try:
                ours = fp32.classify(data, text=text)
            except AudioError as exc:
                files.append({"file": path.name, "text": text is not None, "refused": exc.code})
                continue
            theirs = seed.classify(data, text)
            fused = np.array([[w.probabilities[c] for c in classes] for w in ours.windows])
            diff = float(np.abs(fused - theirs.fused).max())
            worst = max(worst, diff)
            windows += len(fused)
            files.append({"file": path.name, "text": text is not None, "max_abs_diff": diff})

    fp32_gated = Engine.from_bundle(fp32_dir)
    int8 = Engine.from_bundle(int8_dir)
    agreement: list[dict[str, Any]] = []
    for path in fixture_files():
        text = transcripts.get(path.name)
        for gate in ("none", "binary"):
            try:
                a = fp32_gated.classify(path, text=text, gate=gate)  # type: ignore[arg-type]
                b = int8.classify(path, text=text, gate=gate)  # type: ignore[arg-type]
            except AudioError as exc:
                agreement.append({"file": path.name, "gate": gate, "refused": exc.code})
                continue
            agreement.append(
                {
                    "file": path.name,
                    "gate": gate,
                    "fp32": a.label,
                    "int8": b.label,
                    "agree": a.label == b.label,
                    # a tie in fp32 (a small margin between its two best classes) can flip
                    # under any int8 noise: the margin says whether a disagreement means much
                    "fp32_top2_margin": _top2_margin(a.probabilities),
                    "max_emergency_probability_shift": max(
                        abs(a.windows[i].emergency_probability - b.windows[i].emergency_probability)
                        for i in range(len(a.windows))
                    ),
                }
            )
    scored = [row for row in agreement if "agree" in row]
    for engine in (fp32, fp32_gated, int8):
        engine.close()
    report = {
        "mel_transform": fp32.manifest.audio.mel_transform,
        "fp32_vs_seed_max_abs_diff": worst,
        "fp32_vs_seed_windows": windows,
        "fp32_vs_seed_within_1e-4": worst <= 1e-4,
        "fp32_vs_seed": files,
        "int8_top1_agrees": sum(row["agree"] for row in scored),
        "int8_top1_compared": len(scored),
        "int8_agrees_on_every_fixture": all(row["agree"] for row in scored),
        "int8_vs_fp32": agreement,
    }
    print(json.dumps(report))
    return 0


def _top2_margin(probabilities: dict[str, float] | None) -> float | None:
    """p(best) - p(second best) of a verdict; None when the gate decided (no 6 classes)."""
    if probabilities is None:
        return None
    best, second = sorted(probabilities.values(), reverse=True)[:2]
    return best - second


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
