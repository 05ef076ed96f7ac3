"""`python -m bench stt`: speech-to-text in the bundle, measured (issue 16).

Real-time factor, cold start, peak memory, and the cost per 1,000 five-second clips against
Amazon Transcribe, for full-size shapes with seeded, untrained weights (a step costs the same
trained or not): DeepSpeech2 as the CTC family's `full` size (model_export.ctc) and
Whisper-tiny's shapes (model_export.whisper's `full` WhisperConfig with Whisper's multilingual
vocabulary of 51,865 tokens, so the output projection costs what a real Whisper-tiny's does).
Each is exported to ONNX and dynamically quantized to int8 (onnxruntime.quantization: the
weights of MatMul, Gemm and LSTM to int8, activations quantized at run time).

Each (family, precision, threads) runs in a fresh process, through the runtime's own parts:
the recipe's front end (alertfusion.recipe.graph, from audio at the recipe's 44.1 kHz,
resampling included), ONNX Runtime sessions with the engine's options (alertfusion.sessions),
the CTC greedy decoder and alphabet (alertfusion.stt), or the Whisper chunking and greedy
decoder with its key/value cache (alertfusion.stt_whisper). An untrained Whisper decoder
stops at random, so it runs exactly TOKENS_PER_SECOND x the audio's seconds decoder steps (no
end token is accepted). Figures: median milliseconds over `--runs` runs per duration, RTF =
processing time / audio duration, session creation (the cold start added) and the peak RSS
the process gained from just before the sessions were created.

    python -m bench stt [--runs 3] [--threads 1,2] [--out FILE.json] [--work DIR]
    python -m bench stt --quick     # tiny models, short audio, one run: exercises the code
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RECIPES = {
    "ctc": REPO / "recipes" / "emergency-voice-offline.json",
    "whisper": REPO / "recipes" / "emergency-voice-offline-whisper.json",
}
SAMPLE = REPO / "samples" / "ko-violence-long-16k.wav"
#: Whisper's multilingual vocabulary (a fine-tuned Korean Whisper-tiny keeps it)
WHISPER_VOCAB = 51865
#: decoded tokens per second of audio timed for Whisper (docs/DECISIONS.md, issue 16):
#: Korean speech runs at about 5-8 syllables a second, Whisper's byte-level BPE spends one token
#: on a common Hangul syllable and more on a rarer one, and a short clip holds pauses
TOKENS_PER_SECOND = 6.0
#: Whisper's prompt (start, language, transcribe, no timestamps) as the demo tokenizer numbers
#: it; an untrained model's cost does not depend on which ids these are
PROMPT = [1, 2, 3, 4]
FULL_SECONDS = (5.0, 30.0)
QUICK_SECONDS = (1.0, 2.0)
#: the clip length of the cost comparison
COST_CLIP_SECONDS = 5.0
#: the target of issue 16: Whisper-tiny int8 on 5 s audio
TARGET_RTF = 0.1


def export_models(work: Path, size: str) -> dict[str, dict[str, Any]]:
    """Each family's fp32 ONNX files at `size` in `work`: {family: {"fp32": {role: path},
    "shape": str, "parameters": int, ...}}."""
    import torch
    from transformers import WhisperForConditionalGeneration

    from model_export import ctc, whisper

    torch.manual_seed(0)
    symbols = ctc.demo_alphabet("full" if size == "full" else "tiny")
    alphabet = work / "stt.alphabet.json"
    ctc.write_alphabet(symbols, alphabet)
    model = ctc.DeepSpeech2(len(symbols), bins=161, size=size).eval()  # type: ignore[arg-type]
    ctc.export_ctc(model, 161, work / "ctc.onnx")
    channels, hidden, layers = ctc.SIZES[size]
    out: dict[str, dict[str, Any]] = {
        "ctc": {
            "fp32": {"model": str(work / "ctc.onnx")},
            "alphabet": str(alphabet),
            "shape": f"DeepSpeech2 ({size}): 2 conv ({channels} ch), {layers} x BiLSTM "
            f"{hidden}, {len(symbols)} symbols",
            "parameters": sum(p.numel() for p in model.parameters()),
        }
    }
    del model
    vocab = WHISPER_VOCAB if size == "full" else 300
    config = whisper.whisper_config(size, vocab)  # type: ignore[arg-type]
    wmodel = WhisperForConditionalGeneration(config).eval()
    encoder, decoder = work / "whisper.onnx", work / "whisper.decoder.onnx"
    whisper.export_whisper(wmodel, encoder, decoder)
    out["whisper"] = {
        "fp32": {"encoder": str(encoder), "decoder": str(decoder)},
        "shape": f"Whisper ({size}): d_model {config.d_model}, {config.encoder_layers}+"
        f"{config.decoder_layers} layers, {config.encoder_attention_heads} heads, "
        f"{vocab} tokens",
        "parameters": sum(p.numel() for p in wmodel.parameters()),
    }
    return out


def add_int8(models: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Each family's int8 files beside its fp32 ones (model_export.quantize, as a bundle's);
    {family: why} for those that failed."""
    from model_export.quantize import quantize_stt_dynamic

    failed = {}
    for family, entry in models.items():
        try:
            files = {}
            for role, path in entry["fp32"].items():
                dst = Path(path).with_suffix(".int8.onnx")
                quantize_stt_dynamic(Path(path), dst)
                files[role] = str(dst)
            entry["int8"] = files
        except Exception as exc:  # onnxruntime.quantization raises many types
            failed[family] = f"{type(exc).__name__}: {exc}"
    return failed


def file_mb(files: dict[str, str]) -> float:
    return round(sum(Path(p).stat().st_size for p in files.values()) / 2**20, 1)


# ---- the worker: one fresh process per (family, precision, threads) ----


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Sessions created and timed, then `runs` transcriptions per duration (module docstring)."""
    import numpy as np

    from alertfusion.audio import decode_audio
    from alertfusion.recipe.graph import FeatureGraph, layout
    from alertfusion.recipe.schema import Recipe
    from alertfusion.sessions import SessionOptions, create_session
    from alertfusion.stt import ctc_greedy, ids_to_text, read_alphabet
    from alertfusion.stt_whisper import WhisperSessions, chunks, greedy, merge
    from bench.worker import peak_rss_mb

    family = spec["family"]
    recipe = Recipe.load(Path(spec["recipe"]))
    name = recipe.transcriber
    assert name is not None
    transcription = recipe.models[name].transcription
    assert transcription is not None
    ((input_name, feed),) = recipe.models[name].inputs.items()
    rate = recipe.sample_rate
    decoded = decode_audio(Path(spec["sample"]), sample_rate=rate, max_seconds=600).samples
    longest = round(max(spec["seconds"]) * rate)
    audio = np.tile(decoded, -(-longest // len(decoded)))[:longest].astype(np.float32)
    graph = FeatureGraph(recipe)
    symbols = read_alphabet(Path(spec["alphabet"])) if family == "ctc" else []

    def features(samples: np.ndarray) -> np.ndarray:  # as alertfusion.stt.Transcriber does
        values = graph.run(samples, {feed.node})
        return np.ascontiguousarray(layout(values[feed.node], feed.layout)[np.newaxis], np.float32)

    options = SessionOptions(intra_op_threads=int(spec["threads"]))
    before_mb = peak_rss_mb()
    start = time.perf_counter()
    sessions = {role: create_session(path, options) for role, path in spec["files"].items()}
    session_ms = (time.perf_counter() - start) * 1e3
    tps = float(spec["tokens_per_second"])

    def transcribe(samples: np.ndarray) -> dict[str, Any]:
        started = time.perf_counter()
        front = 0.0
        if family == "ctc":
            t = time.perf_counter()
            x = features(samples)
            front = time.perf_counter() - t
            logits = sessions["model"].run(None, {input_name: x})[0][0]
            ids = ctc_greedy(logits, transcription.blank)
            limit = max(1, int(transcription.max_tokens_per_second * len(samples) / rate))
            ids = ids[:limit]
            ids_to_text(ids, symbols)
        else:
            pair = WhisperSessions(sessions["encoder"], sessions["decoder"])
            parts = []
            for a, b in chunks(len(samples), rate, transcription.chunk_overlap_seconds):
                t = time.perf_counter()
                x = features(samples[a:b])
                front += time.perf_counter() - t
                steps = max(1, round(tps * (b - a) / rate))
                # end token -1: never the top token, so exactly `steps` decoder steps
                parts.append(greedy(pair, x, PROMPT, -1, steps))
            ids = merge(parts)
        return {
            "ms": (time.perf_counter() - started) * 1e3,
            "front_end_ms": front * 1e3,
            "tokens": len(ids),
        }

    first_ms = transcribe(audio[: round(min(spec["seconds"]) * rate)])["ms"]
    durations = {}
    for seconds in spec["seconds"]:
        clip = audio[: round(seconds * rate)]
        runs = [transcribe(clip) for _ in range(int(spec["runs"]))]
        median = statistics.median(r["ms"] for r in runs)
        durations[f"{seconds:g}"] = {
            "median_ms": round(median, 1),
            "rtf": round(median / (seconds * 1e3), 4),
            "front_end_ms": round(statistics.median(r["front_end_ms"] for r in runs), 1),
            "tokens": runs[0]["tokens"],
            "runs_ms": [round(r["ms"], 1) for r in runs],
        }
    result: dict[str, Any] = {
        "session_ms": round(session_ms, 1),
        "first_call_ms": round(first_ms, 1),
        "durations": durations,
    }
    if family == "whisper":
        # the encoder alone (its input is always 30 s), so that the decoder's share is known
        x = features(audio[: round(min(spec["seconds"]) * rate)])
        times = []
        for _ in range(int(spec["runs"])):
            t = time.perf_counter()
            sessions["encoder"].run(None, {"input_features": x})
            times.append((time.perf_counter() - t) * 1e3)
        encoder_ms = statistics.median(times)
        result["encoder_ms"] = round(encoder_ms, 1)
        per_token = {}
        for key, d in durations.items():
            per_token[key] = round(
                (d["median_ms"] - d["front_end_ms"] - encoder_ms) / max(1, d["tokens"]), 2
            )
        result["decoder_ms_per_token"] = per_token
    result["peak_rss_added_mb"] = round(peak_rss_mb() - before_mb, 1)
    return result


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """`worker(spec)` in a fresh interpreter (its own sessions, its own peak RSS)."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "bench.stt", "worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.stt worker {spec['family']} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# ---- costs ----


def classifier_memory_mb() -> int:
    """The classifier function's memory setting (infra.config's default)."""
    from infra.config import InfraConfig

    default = InfraConfig.model_fields["classifier_memory_mb"].default
    return int(default)


def transcribe_usd_per_1000(seconds: float = COST_CLIP_SECONDS) -> float:
    """Amazon Transcribe for 1,000 clips of `seconds` (billed per second, 15 s minimum)."""
    from alertfusion.pricing import TRANSCRIBE_MINIMUM_SECONDS, price

    billed = max(seconds, TRANSCRIBE_MINIMUM_SECONDS)
    return 1000 * billed / 60 * price("transcribe_minute")


def lambda_usd_per_1000(ms: float, memory_mb: int) -> float:
    """Lambda compute for 1,000 invocations lasting `ms` more at `memory_mb`."""
    from alertfusion.pricing import price

    return 1000 * ms / 1e3 * memory_mb / 1024 * price("lambda_gb_second_x86")


def costs(results: list[dict[str, Any]], clip: str, memory_mb: int) -> dict[str, Any]:
    """Per 1,000 clips of `clip` seconds: Transcribe's price, and each measured
    configuration's Lambda time at the classifier's memory."""
    rows = {}
    for r in results:
        ms = r["durations"][clip]["median_ms"]
        key = f"{r['family']} {r['precision']} {r['threads']}t"
        rows[key] = {"ms": ms, "usd": round(lambda_usd_per_1000(ms, memory_mb), 4)}
    return {
        "clip_seconds": float(clip),
        "classifier_memory_mb": memory_mb,
        "transcribe_usd": round(transcribe_usd_per_1000(float(clip)), 4),
        "in_bundle_usd": rows,
    }


def target(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Whisper int8 on 5 s audio against TARGET_RTF, per thread count measured."""
    out: dict[str, Any] = {"rtf_max": TARGET_RTF, "measured": {}}
    for r in results:
        if r["family"] == "whisper" and r["precision"] == "int8" and "5" in r["durations"]:
            rtf = r["durations"]["5"]["rtf"]
            out["measured"][f"{r['threads']}t"] = {"rtf": rtf, "met": rtf <= TARGET_RTF}
    return out


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def measure(args: argparse.Namespace) -> dict[str, Any]:
    size = "tiny" if args.quick else "full"
    seconds = list(QUICK_SECONDS if args.quick else FULL_SECONDS)
    runs = 1 if args.quick else args.runs
    threads = [1] if args.quick else [int(t) for t in str(args.threads).split(",")]
    report: dict[str, Any] = {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count()},
        "load_at_start": os.getloadavg(),
        "size": size,
        "tokens_per_second": args.tokens_per_second,
    }
    with tempfile.TemporaryDirectory(prefix="bench-stt-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        models = export_models(work, size)
        report["export_s"] = round(time.perf_counter() - start, 1)
        if args.no_int8:
            report["int8_not_measured"] = dict.fromkeys(models, "not requested (--no-int8)")
        else:
            report["int8_not_measured"] = add_int8(models)
        results = []
        for family, entry in models.items():
            for precision in ("fp32", "int8"):
                if precision not in entry:
                    continue
                for n in threads:
                    spec = {
                        "family": family,
                        "recipe": str(RECIPES[family]),
                        "sample": str(SAMPLE),
                        "files": entry[precision],
                        "alphabet": entry.get("alphabet"),
                        "seconds": seconds,
                        "runs": runs,
                        "threads": n,
                        "tokens_per_second": args.tokens_per_second,
                    }
                    measured = run_worker(spec)
                    results.append(
                        {
                            "family": family,
                            "precision": precision,
                            "threads": n,
                            "file_mb": file_mb(entry[precision]),
                            **measured,
                        }
                    )
                    print(f"  measured {family} {precision} {n} thread(s)", file=sys.stderr)
        report["models"] = {
            f: {"shape": e["shape"], "parameters": e["parameters"]} for f, e in models.items()
        }
    report["results"] = results
    clip = f"{seconds[0]:g}" if args.quick else f"{COST_CLIP_SECONDS:g}"
    report["cost_per_1000_clips"] = costs(results, clip, classifier_memory_mb())
    report["target"] = target(results)
    report["load_at_end"] = os.getloadavg()
    return report


def table(report: dict[str, Any]) -> str:
    """The report as the lines docs/PERFORMANCE.md takes."""
    keys = list(report["results"][0]["durations"]) if report["results"] else []
    head = "| model | precision | threads | MB | " + " | ".join(f"{k} s: ms (RTF)" for k in keys)
    lines = [
        head + " | sessions ms | first call ms | peak RSS added MB |",
        "|" + "---|" * (7 + len(keys)),
    ]
    for r in report["results"]:
        cells = [f"{d['median_ms']:.0f} ({d['rtf']:.3f})" for d in r["durations"].values()]
        lines.append(
            f"| {r['family']} | {r['precision']} | {r['threads']} | {r['file_mb']} | "
            + " | ".join(cells)
            + f" | {r['session_ms']:.0f} | {r['first_call_ms']:.0f} | "
            f"{r['peak_rss_added_mb']:.0f} |"
        )
    for r in report["results"]:
        if r["family"] == "whisper":
            lines.append(
                f"whisper {r['precision']} {r['threads']}t: encoder {r['encoder_ms']} ms, "
                f"decoder ms/token {r['decoder_ms_per_token']}"
            )
    cost = report["cost_per_1000_clips"]
    lines.append(
        f"per 1,000 {cost['clip_seconds']:g} s clips: Amazon Transcribe "
        f"${cost['transcribe_usd']:.2f}; in the bundle at {cost['classifier_memory_mb']} MB: "
        + ", ".join(f"{k} ${v['usd']:.4f}" for k, v in cost["in_bundle_usd"].items())
    )
    t = report["target"]
    lines.append(f"target RTF <= {t['rtf_max']} (whisper int8, 5 s): {t['measured'] or 'n/a'}")
    for family, why in report["int8_not_measured"].items():
        lines.append(f"int8 not measured for {family}: {why}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    report = measure(args)
    print(table(report))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="tiny models, short audio, 1 run")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per duration")
    parser.add_argument("--threads", default="1,2", help="intra-op threads, comma-separated")
    parser.add_argument(
        "--tokens-per-second", type=float, default=TOKENS_PER_SECOND,
        help="Whisper decoder steps per second of audio",
    )  # fmt: skip
    parser.add_argument("--no-int8", action="store_true", help="fp32 only")
    parser.add_argument("--work", help="keep the exported models in this directory")
    parser.add_argument("--out", help="also write the figures as JSON")


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        print(json.dumps(worker(json.loads(sys.argv[2]))), flush=True)
        raise SystemExit(0)
    parser = argparse.ArgumentParser(prog="python -m bench.stt", description=__doc__)
    add_arguments(parser)
    raise SystemExit(main(parser.parse_args()))
