"""`python -m alertfusion classify FILE...`: verdicts on the command line (table or JSON);
`python -m alertfusion selfcheck`: the bundle's golden set on this CPU (alertfusion.selfcheck);
`python -m alertfusion features FILE --out X.npz`: every feature node per window
(alertfusion.recipe.extract);
`python -m alertfusion transcribe FILE...`: the bundle's own speech-to-text (alertfusion.stt);
`python -m alertfusion backfill s3://bucket/prefix/`: a backfill (alertfusion.backfill.cli).

Exit codes of `classify`: 0 every file classified; 2 some input was refused (its reason code is
printed); 1 anything else (no bundle, an invalid bundle, an internal error). Of `selfcheck`: 0
within tolerance; 2 outside it, or a golden set that is missing, truncated or not the one the
manifest names (BUNDLE_INVALID); 1 anything else. Of `features`: 0 written; 2 the audio was
refused; 1 anything else (no bundle, an invalid recipe). Of `transcribe`: 0 every file
transcribed; 2 some audio was refused; 1 anything else (a bundle without a speech-to-text
model).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from alertfusion.engine import Engine
    from alertfusion.result import ClassificationResult

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2
#: where `make setup` puts the demo bundle, relative to the repository
DEMO_BUNDLE = Path("build") / "models" / "demo"
_REPO_ROOT = Path(__file__).resolve().parents[4]


class Progress:
    """A progress indicator on stderr: a bar redrawn in place on a terminal, one line per file
    otherwise (logs), nothing when quiet."""

    def __init__(self, total: int, stream: TextIO, *, enabled: bool = True) -> None:
        self.total = total
        self.stream = stream
        self.enabled = enabled and total > 1
        self.tty = stream.isatty()
        self.done = 0
        self._started = time.perf_counter()

    def step(self, label: str) -> None:
        if not self.enabled:
            return
        self.done += 1
        if self.tty:
            width = 24
            filled = round(width * self.done / self.total)
            rate = self.done / max(time.perf_counter() - self._started, 1e-9)
            self.stream.write(
                f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                f"{rate:5.1f} files/s  {label[-40:]:<40}"
            )
            if self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(f"[{self.done}/{self.total}] {label}\n")
        self.stream.flush()


def default_bundle() -> str | None:
    """MODEL_BUNDLE if set, else the demo bundle of `make setup` if it exists (in the current
    directory, then in the repository this package belongs to)."""
    env = os.environ.get("MODEL_BUNDLE")
    if env:
        return env
    for root in (Path.cwd(), _REPO_ROOT):
        if (root / DEMO_BUNDLE / "manifest.json").is_file():
            return str(root / DEMO_BUNDLE)
    return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m alertfusion",
        description="Emergency detection from short Korean recordings (audio + transcript).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    classify = commands.add_parser(
        "classify",
        help="classify recordings",
        description="Classify recordings: a table by default, JSON with --json. Exit code 0 "
        "when every file was classified, 2 when some input was refused, 1 on other errors.",
    )
    classify.add_argument("files", nargs="+", metavar="FILE", help="audio files")
    text = classify.add_mutually_exclusive_group()
    text.add_argument("--text", help="the transcript (used for every file)")
    text.add_argument("--text-file", type=Path, help="a UTF-8 file holding the transcript")
    text.add_argument(
        "--transcripts",
        type=Path,
        help="a JSON object mapping file names to transcripts (e.g. samples/transcripts.json)",
    )
    classify.add_argument(
        "--bundle",
        help="model bundle directory or s3:// URI (default: MODEL_BUNDLE, else build/models/demo)",
    )
    classify.add_argument("--json", action="store_true", help="print JSON instead of a table")
    classify.add_argument("--gate", choices=("binary", "none"), help="override the manifest's gate")
    classify.add_argument(
        "--threads", type=int, default=None, help="ONNX Runtime threads (default: measured)"
    )
    classify.add_argument("--quiet", action="store_true", help="no progress on stderr")
    check = commands.add_parser(
        "selfcheck",
        help="check the bundle's models against their fp32 answers on this CPU",
        description="Run the bundle's golden set on this CPU and judge each model's answers "
        "against fp32's by margins. Exit code 0 within tolerance, 2 outside it or for a missing "
        "or damaged golden set, 1 on other errors.",
    )
    check.add_argument(
        "--bundle",
        help="model bundle directory or s3:// URI (default: MODEL_BUNDLE, else build/models/demo)",
    )
    check.add_argument("--json", action="store_true", help="print JSON instead of text")
    features = commands.add_parser(
        "features",
        help="write every feature node's output per window (what the models saw) to an .npz",
        description="Compute the recipe's feature graph on every window of a recording and "
        "write each node's output, keyed by node name, window axis first.",
    )
    features.add_argument("file", metavar="FILE", help="an audio file")
    where = features.add_mutually_exclusive_group()
    where.add_argument(
        "--bundle",
        help="model bundle directory or s3:// URI (default: MODEL_BUNDLE, else build/models/demo)",
    )
    where.add_argument("--recipe", type=Path, help="a recipe file instead of a bundle")
    features.add_argument("--out", type=Path, required=True, metavar="X.npz")
    features.add_argument("--nodes", nargs="+", metavar="NODE", help="only these nodes")
    transcribe = commands.add_parser(
        "transcribe",
        help="transcribe recordings with the bundle's speech-to-text model",
        description="Print each recording's transcript by the bundle's own speech-to-text "
        "model (a recipe whose transcript_source is model:NAME). Exit code 0 when every file "
        "was transcribed, 2 when some audio was refused, 1 on other errors.",
    )
    transcribe.add_argument("files", nargs="+", metavar="FILE", help="audio files")
    transcribe.add_argument(
        "--bundle",
        help="model bundle directory or s3:// URI (default: MODEL_BUNDLE, else build/models/demo)",
    )
    transcribe.add_argument("--json", action="store_true", help="one JSON object per file")
    from alertfusion.backfill import cli as backfill_cli  # argparse only: no AWS, no engine

    backfill_cli.add_parser(commands)
    from alertfusion import delete_cli  # argparse only: no AWS, no engine

    delete_cli.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "selfcheck":
        return _selfcheck(args, sys.stdout, sys.stderr)
    if args.command == "features":
        return _features(args, sys.stdout, sys.stderr)
    if args.command == "transcribe":
        return _transcribe(args, sys.stdout, sys.stderr)
    if args.command == "backfill":
        from alertfusion.backfill import cli as backfill_cli

        return backfill_cli.run(args, sys.stdout, sys.stderr)
    if args.command == "delete":
        from alertfusion import delete_cli

        return delete_cli.run(args, sys.stdout, sys.stderr)
    return _classify(args, sys.stdout, sys.stderr)


def _bundle_location(args: argparse.Namespace, err: TextIO) -> str | None:
    """--bundle, else MODEL_BUNDLE, else the demo bundle; None (said on `err`) without one."""
    location = args.bundle or default_bundle()
    if location is None:
        err.write("error: no model bundle: set MODEL_BUNDLE or pass --bundle DIR|s3://...\n")
    return location


def _selfcheck(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from alertfusion.engine import Engine
    from alertfusion.errors import AlertFusionError, ReasonCode

    location = _bundle_location(args, err)
    if location is None:
        return EXIT_ERROR
    try:
        engine = Engine.from_bundle(location)
        try:
            check = engine.self_check()
        finally:
            engine.close()
    except AlertFusionError as exc:
        err.write(f"error: {exc.code}: {exc.message}\n")
        return EXIT_BAD_INPUT if exc.code == ReasonCode.BUNDLE_INVALID else EXIT_ERROR
    if args.json:
        out.write(json.dumps(check.to_dict()) + "\n")
    else:
        out.write("\n".join(check.lines()) + "\n")
    return EXIT_OK if check.passed else EXIT_BAD_INPUT


def _transcribe(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from alertfusion.engine import Engine
    from alertfusion.errors import AlertFusionError, AudioError

    location = _bundle_location(args, err)
    if location is None:
        return EXIT_ERROR
    from alertfusion.stt import checkpoint_key

    try:
        engine = Engine.from_bundle(location)
        model = engine.transcriber().name
    except AlertFusionError as exc:
        err.write(f"error: {exc.code}: {exc.message}\n")
        return EXIT_ERROR
    # an untrained bundle whose speech-to-text model is a trained checkpoint (added to a demo
    # base by `model_export transcriber`) transcribes for real
    if not engine.spec.trained and checkpoint_key(model) not in engine.spec.producer:
        err.write(f"note: bundle {engine.bundle.bundle_version} is untrained: its text is noise\n")
    status = EXIT_OK
    for name in args.files:
        try:
            heard = engine.transcribe(Path(name))
        except AudioError as exc:
            err.write(f"error: {name}: {exc.code}: {exc.message}\n")
            status = EXIT_BAD_INPUT
            continue
        except AlertFusionError as exc:
            err.write(f"error: {name}: {exc.code}: {exc.message}\n")
            return EXIT_ERROR
        if args.json:
            record = {
                "file": name, "text": heard.text, "model": heard.model,
                "n_tokens": heard.n_tokens, "ms": round(heard.ms, 3), "cut_tokens": heard.cut,
            }  # fmt: skip
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            out.write(f"{name}\t{heard.text}\n" if len(args.files) > 1 else f"{heard.text}\n")
    return status


def _features(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import numpy as np

    from alertfusion.audio import decode_audio
    from alertfusion.errors import AlertFusionError, AudioError
    from alertfusion.recipe.extract import extract_features

    try:
        if args.recipe is not None:
            from alertfusion.recipe.schema import Recipe

            recipe = Recipe.load(args.recipe)
        else:
            location = args.bundle or default_bundle()
            if location is None:
                err.write("error: no model bundle: pass --bundle DIR|s3://... or --recipe FILE\n")
                return EXIT_ERROR
            from alertfusion.bundle import load_bundle

            recipe = load_bundle(location).spec.recipe
        unknown = sorted(set(args.nodes or ()) - set(recipe.features))
        if unknown:
            err.write(f"error: recipe {recipe.name} has no node {', '.join(unknown)}\n")
            return EXIT_BAD_INPUT
        samples = decode_audio(args.file, sample_rate=recipe.sample_rate).samples
        arrays = extract_features(recipe, samples, args.nodes)
    except AudioError as exc:
        err.write(f"error: {args.file}: {exc.code}: {exc.message}\n")
        return EXIT_BAD_INPUT
    except AlertFusionError as exc:
        err.write(f"error: {exc.code}: {exc.message}\n")
        return EXIT_ERROR
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("wb") as fh:
        np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]  # numpy's stub: **arrays
    windows = len(arrays[":windows"])
    out.write(f"{args.out}: recipe {recipe.name}, {windows} window(s)\n")
    for key, value in arrays.items():
        if not key.startswith(":") and not key.endswith(":shape"):
            ragged = " (ragged: NaN-padded, see :shape)" if f"{key}:shape" in arrays else ""
            out.write(f"  {key:<16} {str(value.shape):<22} {value.dtype}{ragged}\n")
    skipped = [str(x) for x in arrays[":skipped"]]
    if skipped:
        out.write(f"  left out (a scaler without fitted values): {', '.join(skipped)}\n")
    return EXIT_OK


def _texts(args: argparse.Namespace) -> dict[str, str | None] | str | None:
    """The transcript for every file (a str), per file (a dict by name), or None."""
    if args.text is not None:
        return str(args.text)
    if args.text_file is not None:
        return Path(args.text_file).read_text(encoding="utf-8")
    if args.transcripts is not None:
        raw = json.loads(Path(args.transcripts).read_text(encoding="utf-8"))
        if not isinstance(raw, dict) or not all(
            isinstance(k, str) and isinstance(v, str | None) for k, v in raw.items()
        ):
            raise ValueError(f"{args.transcripts} is not a JSON object of file name -> text")
        return raw
    return None


def _classify(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from alertfusion.errors import AlertFusionError, AudioError, InputError, TextError

    try:
        texts = _texts(args)
    except (OSError, ValueError) as exc:
        err.write(f"error: cannot read the transcript: {exc}\n")
        return EXIT_BAD_INPUT
    location = args.bundle or default_bundle()
    if location is None:
        err.write(
            "error: no model bundle. Run `make setup` (it builds the demo bundle in "
            "build/models/demo), set MODEL_BUNDLE, or pass --bundle DIR|s3://...\n"
        )
        return EXIT_ERROR
    try:
        engine = _engine(location, args)
    except AlertFusionError as exc:
        err.write(f"error: {exc.code}: {exc.message}\n")
        return EXIT_ERROR
    if not engine.spec.trained:
        err.write(
            f"note: bundle {engine.spec.bundle_version} is UNTRAINED (demo weights): "
            "its verdicts mean nothing\n"
        )

    try:
        engine.warm_up()  # sessions now, so that per-file timings are inference only
    except AlertFusionError as exc:
        err.write(f"error: {exc.code}: {exc.message}\n")
        return EXIT_ERROR
    progress = Progress(len(args.files), err, enabled=not args.quiet)
    rows: list[dict[str, Any]] = []
    refused = failed = False
    for name in args.files:
        text = texts.get(Path(name).name) if isinstance(texts, dict) else texts
        try:
            result = engine.classify(Path(name), text=text)
            rows.append({"file": name, "result": result})
        except (AudioError, TextError, InputError) as exc:
            rows.append({"file": name, "error": exc})
            err.write(f"error: {name}: {exc.code}: {exc.message}\n")
            refused = True
        except AlertFusionError as exc:
            rows.append({"file": name, "error": exc})
            err.write(f"error: {name}: {exc.code}: {exc.message}\n")
            failed = True
        progress.step(name)
    engine.close()

    if args.json:
        out.write(_as_json(rows) + "\n")
    else:
        out.write(_as_table(rows, engine))
    return EXIT_ERROR if failed else EXIT_BAD_INPUT if refused else EXIT_OK


def _engine(location: str, args: argparse.Namespace) -> Engine:
    from alertfusion.engine import Engine
    from alertfusion.settings import EngineSettings, load_settings

    settings = load_settings(EngineSettings) if os.environ.get("MODEL_BUNDLE") else None
    limits: dict[str, Any] = {}
    cache_dir = None
    if settings is not None:
        cache_dir = settings.bundle_cache_dir
        limits = {
            "min_audio_seconds": settings.min_audio_seconds,
            "max_audio_seconds": settings.max_audio_seconds,
            "max_text_chars": settings.max_text_chars,
            "min_window_seconds": settings.min_window_seconds,
        }
    threads = (
        args.threads if args.threads is not None else (settings.ort_threads if settings else 0)
    )
    gate = args.gate or (settings.fusion_gate if settings else None)
    return Engine.from_bundle(location, cache_dir=cache_dir, gate=gate, threads=threads, **limits)


def _error_json(exc: Any) -> dict[str, Any]:
    return {"code": str(exc.code), "message": exc.message, "details": exc.details}


def _as_json(rows: list[dict[str, Any]]) -> str:
    def one(row: dict[str, Any]) -> dict[str, Any]:
        if "result" in row:
            return {"file": row["file"], "result": row["result"].model_dump(mode="json")}
        return {"file": row["file"], "error": _error_json(row["error"])}

    if len(rows) == 1:
        row = rows[0]
        payload: Any = row["result"].model_dump(mode="json") if "result" in row else one(row)
    else:
        payload = [one(row) for row in rows]
    return json.dumps(payload, ensure_ascii=False, indent=2)


def _as_table(rows: list[dict[str, Any]], engine: Engine) -> str:
    lines: list[str] = []
    for row in rows:
        if "result" in row:
            lines.extend(_detail(row["file"], row["result"], engine))
        else:
            exc = row["error"]
            lines.append(f"{row['file']}: refused: {exc.code}: {exc.message}")
        lines.append("")
    if len(rows) > 1:
        lines.extend(_summary(rows))
    return "\n".join(lines) + ("\n" if lines and lines[-1] else "")


def _detail(name: str, r: ClassificationResult, engine: Engine) -> list[str]:
    recipe = engine.spec.recipe
    classes = [label.name for label in recipe.labels]
    w = r.windows[r.selected_window]
    verdict = ""
    if recipe.decision.alert_labels:
        word = "emergency" if engine.bundle.legacy is not None else "alert"
        said = word.upper() if r.is_emergency else f"no {word}"
        verdict = f"{said}, {word} probability {r.emergency_probability:.3f}, "
    lines = [
        f"{name}: {r.label} ({r.label_ko}), {verdict}decided by {r.decided_by}",
        f"  window {w.index + 1}/{len(r.windows)} ({w.start_s:.1f}-{w.end_s:.1f} s of "
        f"{r.duration_s:.2f} s) decides",
    ]
    gate = recipe.decision.gate
    if r.audio.gate is not None and gate is not None:
        g = r.audio.gate
        others = {k: v for k, v in g.probabilities.items() if k != gate.label}
        top = max(others, key=lambda k: others[k])
        lines.append(f"  gate: {g.label} (p({top}) {others[top]:.3f})")
    if r.shares is not None:
        lines.append("  share of time: " + ", ".join(f"{k} {v:.0%}" for k, v in r.shares.items()))
    if r.decided_by != "gate":
        lines.append(f"  {'class':<10} {'verdict':>8} {'audio':>8} {'text':>8}")
    for label in classes if r.decided_by != "gate" else ():
        cells = [
            _cell(r.probabilities, label),
            _cell(r.audio.probabilities, label),
            _cell(r.text.probabilities, label),
        ]
        mark = " <" if label == r.label else ""
        lines.append(f"  {label:<10} {cells[0]:>8} {cells[1]:>8} {cells[2]:>8}{mark}")
    if len(r.windows) > 1:
        # the alert probability where the recipe has alerts, else the window's top probability
        alerts = bool(recipe.decision.alert_labels)
        parts = [
            f"{x.start_s:.0f}-{x.end_s:.0f}s {x.label} "
            + (
                f"{x.emergency_probability:.2f}"
                if alerts or not x.probabilities
                else f"{x.probabilities[x.label]:.2f}"
            )
            for x in r.windows
        ]
        lines.append("  windows: " + " | ".join(parts))
    if r.transcript is not None and r.transcript.source == "model":
        lines.append(
            f"  transcript (speech-to-text model {r.transcript.model}, "
            f"{r.transcript.n_tokens} tokens): {r.transcript.text!r}"
        )
    if r.text.status == "used":
        lines.append(f"  text: used ({r.text.n_tokens} tokens), text model says {r.text.label}")
    elif r.text.skipped_reason == "NO_TEXT_MODEL":
        pass
    else:
        lines.append(f"  text: skipped ({r.text.skipped_reason}): {r.text.detail}")
    t = r.timings
    lines.append(
        f"  {t.total_ms:.1f} ms (decode {t.decode_ms:.1f}, features {t.features_ms:.1f}, "
        f"audio models {t.audio_models_ms:.1f}, text model {t.text_model_ms:.1f}, fusion "
        f"{t.fusion_ms:.2f}); bundle {r.model.bundle_version}"
        + ("" if r.model.trained else " (untrained)")
    )
    return lines


def _cell(probs: dict[str, float] | None, label: str) -> str:
    return "-" if probs is None else f"{probs[label]:.3f}"


def _summary(rows: list[dict[str, Any]]) -> list[str]:
    width = max(len("file"), *(len(row["file"]) for row in rows))
    lines = [f"{'file':<{width}}  {'label':<10} {'emergency':>9}  {'decided by':<10}  ms"]
    for row in rows:
        if "result" in row:
            r = row["result"]
            lines.append(
                f"{row['file']:<{width}}  {r.label:<10} {r.emergency_probability:>9.3f}  "
                f"{r.decided_by:<10}  {r.timings.total_ms:.1f}"
            )
        else:
            lines.append(f"{row['file']:<{width}}  refused: {row['error'].code}")
    return lines
