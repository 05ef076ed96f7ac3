"""Fidelity on the full-size demo weights, in the benchmark's run.

    python -m bench.fidelity FP32_BUNDLE INT8_BUNDLE CHECKPOINTS

* the engine with the fp32 bundle against the seed path (PyTorch + librosa, same weights, same
  mel variant): max |fused probability difference| over every window of every fixture, with and
  without its transcript (every window scored on both sides, as in training);
* the engine with the int8 bundle against the fp32 bundle, judged by margins
  (alertfusion.agreement): every decision of every fixture, gate off and on, on this CPU's int8
  kernels and on the float reference path (graph optimisations off), and the bundle's self-check
  on both paths.
Prints one JSON object.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np


def main(argv: list[str]) -> int:
    from alertfusion.agreement import Agreement, judge_results, model_tolerances
    from alertfusion.engine import Engine, Tuning
    from alertfusion.errors import AudioError
    from alertfusion.sessions import SessionOptions
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
            fused = np.array(
                [
                    [w.probabilities[c] for c in classes]  # type: ignore[index]  # all scored
                    for w in ours.windows
                ]
            )
            diff = float(np.abs(fused - theirs.fused).max())
            worst = max(worst, diff)
            windows += len(fused)
            files.append({"file": path.name, "text": text is not None, "max_abs_diff": diff})

    fp32_gated = Engine.from_bundle(fp32_dir)
    paths = {
        "kernels": Engine.from_bundle(int8_dir),
        # graph optimisations off: the QDQ graph through float kernels, as a CPU with exact
        # integer arithmetic computes it (up to rounding)
        "reference": Engine.from_bundle(
            int8_dir, tuning=Tuning(session=SessionOptions(optimization="disabled"))
        ),
    }
    tolerances = model_tolerances(paths["kernels"].manifest)
    agreement: dict[str, Any] = {}
    for path_name, int8 in paths.items():
        judged = Agreement(())
        for path in fixture_files():
            text = transcripts.get(path.name)
            for gate in ("none", "binary"):
                try:
                    a = fp32_gated.classify(path, text=text, gate=gate)
                    b = int8.classify(path, text=text, gate=gate)
                except AudioError:
                    continue
                judged += judge_results(a, b, tolerances, name=f"{path.name} gate={gate}")
        check = int8.self_check()
        agreement[path_name] = {
            "decisions": len(judged.decisions),
            "decisive": len(judged.decisive),
            "agreement": judged.rate,
            "near_ties": [d.describe() for d in judged.near_ties],
            "disagreements": [d.describe() for d in judged.disagreements],
            "max_emergency_probability_shift": judged.max_error,
            "selfcheck": check.to_dict(),
        }
    for engine in (fp32, fp32_gated, *paths.values()):
        engine.close()
    report = {
        "mel_transform": fp32.manifest.audio.mel_transform,
        "fp32_vs_seed_max_abs_diff": worst,
        "fp32_vs_seed_windows": windows,
        "fp32_vs_seed_within_1e-4": worst <= 1e-4,
        "fp32_vs_seed": files,
        "int8_tolerances": {name: asdict(t) for name, t in tolerances.items()},
        "int8_vs_fp32": agreement,
        "int8_agrees_where_decisive": all(
            not row["disagreements"] and row["selfcheck"]["passed"] for row in agreement.values()
        ),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
