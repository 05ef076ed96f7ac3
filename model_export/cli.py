"""Command line: `python -m model_export bundle|demo|transcriber|verify` (argparse).

Exit codes: 0 success; 2 for anything the user must fix (bad arguments, unreadable or
mismatched checkpoints, tokenizer files, parity or quantization refusals, a bundle that fails
verification, an output location that cannot be written), with one message on stderr naming
what is wrong.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from model_export.errors import ExportError, ExportReason

EXIT_OK = 0
EXIT_USER_ERROR = 2
MODEL_CHOICES = ("audio_binary", "audio_multiclass", "text")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (a fraction), got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc
    if value < 3:
        raise argparse.ArgumentTypeError("must be at least 3 ([CLS], one token, [SEP])")
    return value


def _add_quantization(p: argparse.ArgumentParser, *, demo: bool = False) -> None:
    p.add_argument(
        "--quantize",
        choices=("none", "int8"),
        default="int8",
        help="int8: static QDQ for the audio models, dynamic for the text model (default)",
    )
    p.add_argument(
        "--threshold",
        type=_fraction,
        default=None if demo else 0.99,
        help="refuse an int8 model whose top-1 agreement with fp32 on the calibration inputs "
        "is below this fraction (default 0.99"
        + (
            "; 0.9 for --size tiny, whose narrow networks cannot hold 0.99 on every seed)"
            if demo
            else ")"
        ),
    )
    p.add_argument(
        "--keep-fp32",
        action="append",
        choices=MODEL_CHOICES,
        default=[],
        metavar="MODEL",
        help="keep this model in fp32 under --quantize int8 (repeatable; "
        f"{', '.join(MODEL_CHOICES)})",
    )
    p.add_argument(
        "--fp32-fallback",
        action="store_true",
        help="also store each int8 model's fp32 graph: where the self-check fails on the "
        "serving CPU, the functions serve with it instead of refusing (a larger bundle)",
    )
    p.add_argument(
        "--calibration-audio",
        type=Path,
        metavar="DIR",
        help="recordings to calibrate static int8 on and to measure agreement with; a "
        "transcripts.json (file name -> text) there adds its texts to the text calibration",
    )
    p.add_argument("--force", action="store_true", help="replace an existing bundle at --out")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python -m model_export",
        description="Trained PyTorch checkpoints -> a verified ONNX model bundle.",
    )
    sub = root.add_subparsers(dest="command", required=True)

    b = sub.add_parser(
        "bundle",
        help="convert checkpoints (or, with --recipe, ONNX files) into a bundle",
        description="Convert the two DenseNet-121 checkpoints, the KoBERT checkpoint and its "
        "SentencePiece model (+ gluonnlp vocab JSON) into a bundle directory; or, with "
        "--recipe, package ONNX files exported elsewhere (--onnx NAME=FILE, checked against "
        "--parity FILE.npz) as a manifest v2 bundle of that recipe.",
    )
    b.add_argument("--audio-binary", type=Path, metavar="CKPT")
    b.add_argument("--audio-multiclass", type=Path, metavar="CKPT")
    b.add_argument("--text", type=Path, metavar="CKPT")
    b.add_argument("--spm", type=Path, metavar="FILE", help="KoBERT .spiece")
    b.add_argument("--recipe", type=Path, metavar="FILE", help="a recipe (recipes/NAME.json)")
    b.add_argument(
        "--onnx",
        action="append",
        type=_named_path,
        default=[],
        metavar="NAME=FILE",
        help="with --recipe: the ONNX file of the recipe's model NAME (repeatable)",
    )
    b.add_argument(
        "--parity",
        type=Path,
        metavar="FILE.npz",
        help="with --recipe: NAME/INPUT rows and NAME/OUTPUT reference outputs per model",
    )
    b.add_argument(
        "--scaler",
        action="append",
        type=_named_path,
        default=[],
        metavar="NODE=FILE.npz",
        help="with --recipe: a fitted scaler's arrays 'mean' and 'scale' for an affine node",
    )
    b.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="with --recipe: max |ONNX - reference| per output value (default 1e-4)",
    )
    b.add_argument("--vocab", type=Path, metavar="FILE", help="gluonnlp vocab JSON (authority)")
    b.add_argument("--out", type=Path, required=True, metavar="DIR")
    _add_quantization(b)
    b.add_argument(
        "--calibration-texts",
        type=Path,
        metavar="FILE",
        help="extra calibration texts for the text model, one per line",
    )
    b.add_argument("--max-len", type=_positive_int, default=60, help="tokens incl. [CLS]/[SEP]")
    b.add_argument(
        "--layout",
        choices=("stacked", "channels"),
        default="stacked",
        help="feature image layout the audio models were trained on (default stacked: 1x192x64)",
    )
    b.add_argument(
        "--mel-transform",
        choices=("zscore", "zscore_db"),
        default="zscore",
        help="zscore: what training fed the network (default); zscore_db: the original server",
    )
    b.add_argument(
        "--tokenizer-pipeline",
        choices=("sentencepiece", "bert_sp"),
        default="sentencepiece",
        help="sentencepiece: SentencePiece on the whole text (docs/REFERENCE_MODEL.md); "
        "bert_sp: gluonnlp's BERTSPTokenizer",
    )
    b.add_argument("--bundle-version", help="default: b-<hash of the inputs>")
    b.add_argument("--description", default="", help="free text stored in the manifest")
    b.add_argument(
        "--no-optimize-text",
        action="store_true",
        help="keep the exported text graph (skip ONNX Runtime's BERT fusions)",
    )
    b.add_argument(
        "--size",
        choices=("full", "tiny"),
        default="full",
        help=argparse.SUPPRESS,  # tiny: the shrunken test networks
    )

    d = sub.add_parser(
        "demo",
        help="a bundle from deterministic, seeded demo weights (marked untrained)",
        description="Make demo checkpoints in the original formats (in OUT-checkpoints/ unless "
        "--checkpoints-out) and bundle them like `bundle` does. The weights are not trained.",
    )
    d.add_argument("--out", type=Path, required=True, metavar="DIR")
    d.add_argument("--size", choices=("full", "tiny"), default="full")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--checkpoints-out", type=Path, metavar="DIR")
    d.add_argument(
        "--recipe",
        type=Path,
        metavar="FILE",
        help="build this recipe's architecture (recipes/NAME.json) as a manifest v2 bundle; "
        "int8 is then opt-in (--quantize int8)",
    )
    _add_quantization(d, demo=True)

    t = sub.add_parser(
        "transcriber",
        help="add a trained speech-to-text checkpoint to an emergency-voice bundle",
        description="Package a trained Whisper (Hugging Face directory) or DeepSpeech2 "
        "(state dict + alphabet) checkpoint beside the emergency-voice bundle at --base, as a "
        "manifest v2 bundle of --recipe (a recipe whose transcript comes from its own model): "
        "exported to ONNX, its token ids checked against PyTorch's greedy decode on the "
        "calibration recordings.",
    )
    t.add_argument("--recipe", type=Path, required=True, metavar="FILE")
    t.add_argument(
        "--base",
        type=Path,
        required=True,
        metavar="DIR",
        help="an emergency-voice bundle (v1, or v2 without a speech-to-text model)",
    )
    family = t.add_mutually_exclusive_group(required=True)
    family.add_argument(
        "--whisper",
        type=Path,
        metavar="DIR",
        help="a Hugging Face Whisper directory: config.json, model.safetensors or "
        "pytorch_model.bin, tokenizer.json (recipe family whisper)",
    )
    family.add_argument(
        "--ctc",
        type=Path,
        metavar="CKPT",
        help="a model_export.ctc.DeepSpeech2 state dict (torch.save; recipe family ctc)",
    )
    t.add_argument(
        "--alphabet",
        type=Path,
        metavar="FILE",
        help='with --ctc: its characters, one per output index, blank first: {"symbols": '
        "[...]} or a list (.json), or one per line (.txt)",
    )
    t.add_argument(
        "--calibration-audio",
        type=Path,
        metavar="DIR",
        help="recordings the token parity and int8 agreement are checked on (default: samples/)",
    )
    t.add_argument(
        "--quantize",
        choices=("none", "int8"),
        default="int8",
        help="int8 (default): dynamic int8 of the speech-to-text graphs, refused where it "
        "disagrees with fp32 on the calibration recordings (decisive outputs, margin rule)",
    )
    t.add_argument(
        "--threshold",
        type=_fraction,
        default=0.99,
        help="refuse int8 below this agreement with fp32 on the decisive outputs (default 0.99)",
    )
    t.add_argument(
        "--fp32-fallback",
        action="store_true",
        help="with --ctc and int8: also store the fp32 graph, served where the self-check "
        "fails on the serving CPU",
    )
    t.add_argument("--out", type=Path, required=True, metavar="DIR")
    t.add_argument("--force", action="store_true", help="replace an existing bundle at --out")
    t.add_argument("--bundle-version", help="default: the base's version +NAME-<checkpoint hash>")

    v = sub.add_parser("verify", help="re-check a bundle against its manifest")
    v.add_argument("directory", type=Path, metavar="DIR")
    v.add_argument(
        "--timing",
        action="store_true",
        help="also measure each model's session creation and batch-1 latency",
    )
    v.add_argument(
        "--threads",
        type=int,
        default=0,
        help="intra-op threads for --timing (default: ONNX Runtime's, one per core)",
    )
    return root


def _named_path(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE, got {text!r}")
    return name, Path(path)


def _recipe_bundle(args: argparse.Namespace) -> int:
    from model_export.progress import Progress
    from model_export.recipe_onnx import build_recipe_bundle

    flags = ("audio_binary", "audio_multiclass", "text", "spm", "vocab")
    given = [f"--{f.replace('_', '-')}" for f in flags if getattr(args, f) is not None]
    if given or not args.onnx or args.parity is None:
        raise ExportError(
            ExportReason.BUNDLE_INVALID,
            "--recipe packages ONNX files: give --onnx NAME=FILE for each model and --parity "
            "FILE.npz" + (f", not {', '.join(given)}" if given else ""),
        )
    progress = Progress.to_stderr()
    manifest = build_recipe_bundle(
        args.recipe,
        dict(args.onnx),
        args.parity,
        args.out,
        scalers=dict(args.scaler),
        tolerance=args.tolerance,
        quantize=args.quantize if args.quantize_given else "none",
        threshold=args.threshold,
        keep_fp32=frozenset(args.keep_fp32),
        fp32_fallback=args.fp32_fallback,
        calibration_audio=args.calibration_audio,
        bundle_version=args.bundle_version,
        description=args.description,
        force=args.force,
        progress=progress,
    )
    print(f"bundle {args.out}: recipe {manifest.recipe.name}, version {manifest.bundle_version}")
    return EXIT_OK


def _bundle(args: argparse.Namespace) -> int:
    if args.recipe is not None:
        return _recipe_bundle(args)
    missing = [
        f"--{f.replace('_', '-')}"
        for f in ("audio_binary", "audio_multiclass", "text", "spm")
        if getattr(args, f) is None
    ]
    if missing:
        raise ExportError(
            ExportReason.BUNDLE_INVALID,
            f"the following arguments are required: {', '.join(missing)}",
        )
    from alertfusion.manifest import AudioPreprocessing
    from model_export.build import BuildOptions, Sources, build_bundle
    from model_export.progress import Progress, format_summary

    progress = Progress.to_stderr()
    options = BuildOptions(
        quantize=args.quantize,
        calibration_audio=args.calibration_audio,
        calibration_texts=args.calibration_texts,
        threshold=args.threshold,
        keep_fp32=frozenset(args.keep_fp32),
        fp32_fallback=args.fp32_fallback,
        size=args.size,
        force=args.force,
        trained=True,
        bundle_version=args.bundle_version,
        description=args.description,
        audio=AudioPreprocessing(layout=args.layout, mel_transform=args.mel_transform),
        max_len=args.max_len,
        tokenizer_pipeline=args.tokenizer_pipeline,
        optimize_text=not args.no_optimize_text,
    )
    sources = Sources(
        audio_binary=args.audio_binary,
        audio_multiclass=args.audio_multiclass,
        text=args.text,
        spm=args.spm,
        vocab=args.vocab,
    )
    result = build_bundle(sources, args.out, options, progress)
    print(format_summary(result.manifest, str(result.directory), result.seconds))
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from model_export.demo import DEFAULT_CALIBRATION_AUDIO, DEMO_THRESHOLDS, build_demo_bundle
    from model_export.progress import Progress, format_summary

    progress = Progress.to_stderr()
    if args.recipe is not None:
        from model_export.recipe_demo import build_recipe_demo

        spec = build_recipe_demo(
            args.recipe,
            args.out,
            size=args.size,
            seed=args.seed,
            quantize=args.quantize if args.quantize_given else "none",
            calibration_audio=args.calibration_audio or DEFAULT_CALIBRATION_AUDIO,
            threshold=DEMO_THRESHOLDS[args.size] if args.threshold is None else args.threshold,
            fp32_fallback=args.fp32_fallback,
            force=args.force,
            progress=progress,
            checkpoints_out=args.checkpoints_out,
        )
        print(f"bundle {args.out}: recipe {spec.recipe.name}, version {spec.bundle_version}")
        if spec.recipe.transcriber is not None and not spec.trained:
            from model_export.stt_demo import NOISE_NOTE

            print(f"note: {NOISE_NOTE}")
        return EXIT_OK
    manifest = build_demo_bundle(
        args.out,
        size=args.size,
        quantize=args.quantize,
        seed=args.seed,
        calibration_audio=args.calibration_audio,
        checkpoints_out=args.checkpoints_out,
        force=args.force,
        threshold=args.threshold,
        keep_fp32=frozenset(args.keep_fp32),
        fp32_fallback=args.fp32_fallback,
        progress=progress,
    )
    print(format_summary(manifest, str(args.out), progress.elapsed))
    return EXIT_OK


def _transcriber(args: argparse.Namespace) -> int:
    from model_export.demo import DEFAULT_CALIBRATION_AUDIO
    from model_export.progress import Progress
    from model_export.stt_bundle import Int8
    from model_export.stt_checkpoint import build_transcriber_bundle

    manifest = build_transcriber_bundle(
        args.recipe,
        args.base,
        args.out,
        whisper=args.whisper,
        ctc_checkpoint=args.ctc,
        alphabet=args.alphabet,
        calibration_audio=args.calibration_audio or DEFAULT_CALIBRATION_AUDIO,
        force=args.force,
        bundle_version=args.bundle_version,
        progress=Progress.to_stderr(),
        int8=Int8(args.quantize, args.threshold, args.fp32_fallback),
    )
    print(f"bundle {args.out}: recipe {manifest.recipe.name}, version {manifest.bundle_version}")
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    from alertfusion.manifest import MANIFEST_FILE
    from model_export.verify import verify_bundle

    path = args.directory / MANIFEST_FILE
    head = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    if '"schema_version": 2' in head:
        from model_export.recipe_build import verify_v2

        for line in verify_v2(args.directory):
            print(f"  ok  {line}")
        print(f"bundle {args.directory} OK (manifest v2)")
        return EXIT_OK

    report = verify_bundle(args.directory, timing=args.timing, threads=args.threads)
    print(f"bundle {args.directory} OK (version {report.manifest.bundle_version})")
    for check in report.checks:
        print(f"  ok  {check}")
    for name, ms in report.session_ms.items():
        print(f"  {name}: session created in {ms:.0f} ms")
    for name, ms in report.latency_ms.items():
        print(f"  {name}: {ms:.2f} ms per batch-1 run")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command in ("demo", "bundle"):
        # int8 is the default of today's system; a recipe's models are quantized when asked
        raw = list(argv) if argv is not None else sys.argv[1:]
        args.quantize_given = any(a == "--quantize" or a.startswith("--quantize=") for a in raw)
    handler = {"bundle": _bundle, "demo": _demo, "transcriber": _transcriber, "verify": _verify}[
        args.command
    ]
    try:
        return handler(args)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as exc:  # an unwritable --out, a full disk: the environment, not the model
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted; nothing was written to --out", file=sys.stderr)
        return 130
