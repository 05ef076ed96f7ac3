"""`python -m bench.recipes`: is the emergency-voice system as fast as a recipe as it was?

Interleaved rounds on the same process and clips, medians reported (run it on a quiet machine;
figures go to docs/PERFORMANCE.md with the command, date and CPU):

* per 5 s window: the feature image as v1 computes it (`alertfusion.features.feature_image`),
  as the engine computes it for a v2 bundle of recipes/emergency-voice.json (recognised as
  today's system: the same function, by construction), and through the generic feature graph
  (`alertfusion.recipe.graph`, what a recipe that is not recognised would run);
* per request (5 s and 25 s clips, no text, gate on): the engine on the v1 bundle and on the
  same files with a v2 manifest;
* per window, each shipped recipe's graph (for information).

    python -m bench.recipes [--bundle build/models/demo] [--rounds 30] [--out FILE.json]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RECIPES = REPO / "recipes"
SAMPLE = REPO / "samples" / "ko-violence-long-16k.wav"


def as_v2(v1: Path, out: Path) -> Path:
    """A copy of a v1 bundle whose manifest is v2 carrying recipes/emergency-voice.json."""
    from alertfusion.manifest import Manifest
    from alertfusion.manifest_v2 import ManifestV2, from_v1

    shutil.copytree(v1, out)
    raw = from_v1(Manifest.load(v1 / "manifest.json")).model_dump(mode="json")
    raw["recipe"] = json.loads((RECIPES / "emergency-voice.json").read_text("utf-8"))
    ManifestV2.model_validate(raw).dump(out / "manifest.json")
    return out


def interleaved(cases: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median milliseconds of each case, the cases taking turns every round."""
    for fn in cases.values():
        fn()  # warm caches and sessions
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: round(statistics.median(t), 3) for name, t in times.items()}


def measure(bundle: Path, rounds: int) -> dict[str, Any]:
    from alertfusion.audio import decode_audio
    from alertfusion.engine import Engine
    from alertfusion.features import feature_image
    from alertfusion.recipe.graph import FeatureGraph, plan_windows, window_samples
    from alertfusion.recipe.schema import Recipe

    with tempfile.TemporaryDirectory() as tmp:
        v1 = Engine.from_bundle(bundle)
        v2 = Engine.from_bundle(as_v2(bundle, Path(tmp) / "v2"))
        assert v2.bundle.legacy is not None, "the v2 bundle must be recognised"
        cfg = v1.manifest.audio
        y = decode_audio(SAMPLE, sample_rate=cfg.sample_rate).samples
        window = y[: cfg.window_samples]
        graph = FeatureGraph(v2.spec.recipe)
        out: dict[str, Any] = {
            "window_ms": interleaved(
                {
                    "v1 feature image": lambda: feature_image(window, cfg),
                    "v2 recognised (engine's path)": lambda: feature_image(
                        window, v2.manifest.audio
                    ),
                    "v2 generic graph": lambda: graph.run(window, ["image"]),
                },
                rounds,
            )
        }
        clip5 = decode_audio(SAMPLE, sample_rate=cfg.sample_rate, max_seconds=600)
        requests: dict[str, Callable[[], object]] = {}
        for seconds in (5, 25):
            from alertfusion.audio import DecodedAudio

            cut = DecodedAudio(
                samples=clip5.samples[: seconds * cfg.sample_rate],
                sample_rate=cfg.sample_rate,
                source_sample_rate=clip5.source_sample_rate,
                channels=1,
                format="wav",
            )
            requests[f"v1 {seconds} s"] = partial(v1.classify, cut)
            requests[f"v2 {seconds} s"] = partial(v2.classify, cut)
        out["request_ms"] = interleaved(requests, rounds)
        v1.close()
        v2.close()
    per_recipe = {}
    for path in sorted(RECIPES.glob("*.json")):
        recipe = Recipe.load(path)
        samples = decode_audio(SAMPLE, sample_rate=recipe.sample_rate).samples
        plan = plan_windows(len(samples), recipe.windows, recipe.sample_rate)
        w = window_samples(samples, plan.spans[0], plan.pad_to)
        g = FeatureGraph(recipe)
        per_recipe[recipe.name] = interleaved({"graph": partial(g.run, w)}, rounds)["graph"]
    out["recipe_graph_window_ms"] = per_recipe
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recipes", description=__doc__)
    parser.add_argument("--bundle", default=str(REPO / "build" / "models" / "demo"))
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--out", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    figures = measure(Path(args.bundle), args.rounds)
    for section, values in figures.items():
        print(section)
        for name, ms in values.items():
            print(f"  {name:<32} {ms:8.3f} ms")
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
