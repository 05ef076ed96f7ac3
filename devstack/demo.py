"""`make demo`: one recording through the asynchronous pipeline, end to end, on this machine.

    python -m devstack.demo [--audio FILE --text "..."] [--bundle DIR | --recipe NAME]
                            [--auth cognito]

moto is the embedded AWS (devstack/stack.py). The HTTP API runs under uvicorn on a
free 127.0.0.1 port; the demo calls it like the app does: ``POST /uploads`` → the recording
over HTTP with the presigned POST → S3 notification → starter → Transcribe job in moto →
transcript + completion event from the labelled local Transcribe stand-in → classifier →
``GET /jobs/{id}`` until DONE. It prints both verdicts with their per-class probabilities,
the timings and the time from the upload to each verdict, then stops everything.
``--auth cognito`` runs it as alice, signed in to a local Cognito user pool (moto's real
signed tokens): the job is hers, bob's token gets 404 for it, and she deletes it at the end.
``--recipe NAME`` runs it on that recipe's demo bundle, ``build/models/NAME`` (`make demo
ARGS="--recipe infant-cry"` builds it when missing: ``python -m model_export demo --recipe
recipes/NAME.json --out build/models/NAME``); a recipe without a text model never starts
Transcribe, and its audio verdict is final.

Handler logs and EMF metrics go to ``build/local/demo.log``. Exit status: 0 when the job
ends DONE, 1 when it fails or times out, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

REPO = Path(__file__).resolve().parents[1]
DEFAULT_AUDIO = REPO / "samples" / "ko-help-16k.wav"
DEFAULT_BUNDLE = REPO / "build" / "models" / "demo"
LOG_FILE = REPO / "build" / "local" / "demo.log"
POLL_S = 0.05


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.demo",
        description="One recording through the asynchronous pipeline against moto.",
    )
    parser.add_argument("--audio", type=Path, default=DEFAULT_AUDIO, help="the recording")
    parser.add_argument(
        "--text",
        help="what the local Transcribe stand-in answers (default: the sample's transcript "
        "from samples/transcripts.json; none for other files)",
    )
    parser.add_argument("--bundle", type=Path, help="model bundle (default build/models/demo)")
    parser.add_argument(
        "--recipe",
        metavar="NAME",
        help="run on the demo bundle of recipes/NAME.json, build/models/NAME",
    )
    parser.add_argument(
        "--gate",
        choices=["binary", "none"],
        help="override the bundle's fusion gate (FUSION_GATE); none runs every model",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for DONE")
    parser.add_argument("--summary-json", type=Path, help="also write the results as JSON here")
    parser.add_argument(
        "--auth",
        choices=["api_key", "cognito"],
        default="api_key",
        help="cognito: the flow as a user signed in to a local Cognito user pool",
    )
    args = parser.parse_args(argv)
    if args.recipe is not None and args.bundle is not None:
        parser.error("give --bundle or --recipe, not both")
    if args.bundle is None:
        args.bundle = recipe_bundle(args.recipe) if args.recipe else DEFAULT_BUNDLE
    return args


def recipe_bundle(name: str) -> Path:
    """Where `make demo ARGS="--recipe NAME"` builds the demo bundle of recipes/NAME.json."""
    return REPO / "build" / "models" / name


def _shown(path: Path) -> str:
    """`path` relative to the working directory when it is under it (shorter output)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def transcript_for(audio: Path, text: str | None) -> tuple[str, str]:
    """(text, where it came from) for the stand-in."""
    if text is not None:
        return text, "--text"
    known: dict[str, str] = json.loads(
        (REPO / "samples" / "transcripts.json").read_text(encoding="utf-8")
    )
    if audio.name in known:
        return known[audio.name], "samples/transcripts.json"
    return "", "none given: Transcribe's output for a recording without words"


class Console:
    """What the demo prints (stdout itself carries the handlers' logs to the log file)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.t0 = time.perf_counter()

    def __call__(self, line: str = "") -> None:
        print(line, file=self.stream, flush=True)

    def step(self, line: str) -> None:
        self(f"  {time.perf_counter() - self.t0:6.2f}s  {line}")


def bar(p: float, width: int = 30) -> str:
    filled = int(round(p * width))
    return "█" * filled + "·" * (width - filled)


def show_verdict(out: Console, title: str, verdict: dict[str, Any] | None) -> None:
    if verdict is None:
        out(f"{title}: none")
        return
    out(
        f"{title}: {verdict['label']} ({verdict['label_ko']})  "
        f"alert={'yes' if verdict['is_emergency'] else 'no'}  "
        f"p(alert)={verdict['emergency_probability']:.3g}  "
        f"decided by {verdict['decided_by']}"
        + (f", text from {verdict['text_source']}" if verdict.get("text_source") else "")
    )
    if verdict.get("audio_only_reason"):
        out(
            f"    audio only because {verdict['audio_only_reason']}: {verdict['audio_only_detail']}"
        )
    probabilities = verdict.get("probabilities")
    if probabilities is None:
        out("    (the gate decided: no per-label probabilities were computed)")
        return
    width = max(9, *(len(label) for label in probabilities))
    for label, p in sorted(probabilities.items(), key=lambda kv: -kv[1]):
        out(f"    {label:<{width}} {p:6.3f}  {bar(p)}")


def _ms_after(moment: str | None, reference_epoch: float) -> float | None:
    if moment is None:
        return None
    return (
        datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp() - reference_epoch
    ) * 1000


def run(args: argparse.Namespace, out: Console) -> int:
    import httpx

    from devstack.api_server import ApiServer
    from devstack.config import LocalConfig
    from devstack.handlers import Invocation
    from devstack.stack import LocalStack
    from devstack.transcribe import STANDIN_LABEL, StandInOutcome

    audio_path: Path = args.audio
    if not audio_path.is_file():
        out(f"demo: no such recording: {audio_path}")
        return 2
    if args.recipe is not None and not (REPO / "recipes" / f"{args.recipe}.json").is_file():
        out(f"demo: no recipe recipes/{args.recipe}.json")
        return 2
    if not (args.bundle / "manifest.json").is_file():
        build = (
            f"python -m model_export demo --recipe recipes/{args.recipe}.json --out "
            f"{_shown(args.bundle)}"
            if args.recipe
            else "make setup` or `make bundle-demo"
        )
        out(f"demo: no model bundle at {_shown(args.bundle)} (run `{build}`)")
        return 2
    audio = audio_path.read_bytes()
    text, text_source = transcript_for(audio_path, args.text)
    manifest = json.loads((args.bundle / "manifest.json").read_text(encoding="utf-8"))

    # a recipe with its own speech-to-text model: the classifier transcribes, no Transcribe
    model_stt = str((manifest.get("recipe") or {}).get("transcript_source", "")).startswith(
        "model:"
    )
    out("alertfusion demo: the asynchronous pipeline end to end, moto as the embedded AWS")
    out(f"  recording  {_shown(audio_path)} ({len(audio) / 1024:.0f} KiB)")
    text_models = [
        m
        for m in (manifest.get("recipe") or {}).get("models", {}).values()
        if m.get("source") == "transcript"
    ]
    if manifest.get("schema_version") == 2 and not text_models:
        text_source += "; unused: the recipe has no text model, Transcribe is not started"
    if model_stt:
        out("  transcript by the bundle's speech-to-text model (TRANSCRIPT_SOURCE=model: no "
            "Transcribe, no stand-in)")  # fmt: skip
    else:
        out(f"  transcript {text!r} ({text_source})")
    trained = (
        "trained" if manifest.get("trained") else "UNTRAINED demo weights: labels mean nothing"
    )
    recipe = (manifest.get("recipe") or {}).get("name", "emergency-voice")
    out(
        f"  bundle     {_shown(args.bundle)} ({manifest.get('bundle_version')}, recipe "
        f"{recipe}, {trained})"
    )
    out()

    def on_invocation(inv: Invocation) -> None:
        if inv.function == "sweeper" and inv.ok and not (inv.response or {}).get("checked"):
            return  # an idle scheduled run
        what = {"starter": "starter", "classifier": "classifier", "sweeper": "sweeper"}
        detail = _describe(inv)
        out.step(
            f"{what[inv.function]} ({inv.trigger}) {'ok' if inv.ok else 'FAILED'} in "
            f"{inv.wall_ms:.0f} ms (inference {inv.inference_ms:.0f} ms){detail}"
        )

    env = {"FUSION_GATE": args.gate} if args.gate else {}
    if model_stt:
        env["TRANSCRIPT_SOURCE"] = "model"
    config = LocalConfig(bundle=str(args.bundle), env=env, auth=args.auth)
    summary: dict[str, Any] = {
        "audio": str(audio_path),
        "bundle": str(args.bundle),
        "recipe": recipe,
    }
    with LocalStack(config, on_note=out.step, on_invocation=on_invocation) as stack:
        out.step(f"moto listening on {stack.endpoint_url}; bucket, table, bus, queues created")
        warm = stack.warm()
        out.step(
            f"handlers initialised in {warm['init_ms']:.0f} ms; engine loaded (bundle checked, "
            f"ONNX sessions created) in {warm['engine_ms']:.0f} ms"
        )
        headers = _sign_in(out, stack, "alice") if stack.cognito is not None else {}
        with (
            ApiServer() as api,
            httpx.Client(base_url=api.url, timeout=30, headers=headers) as client,
        ):
            out.step(f"HTTP API on {api.url}")
            created = client.post("/uploads", json={"filename": audio_path.name})
            if created.status_code != 201:
                out(f"demo: POST /uploads answered {created.status_code}: {created.text}")
                return 1
            upload = created.json()
            job_id = upload["job_id"]
            summary["job_id"] = job_id
            stack.standin.plan(job_id, StandInOutcome.completed(text))
            out.step(f"POST /uploads → job {job_id}, presigned POST for {upload['upload']['key']}")
            post = upload["upload"]
            started = time.perf_counter()
            sent = httpx.post(
                post["url"],
                data=post["fields"],
                files={"file": (audio_path.name, audio, post["content_type"])},
                timeout=30,
            )
            uploaded_epoch = time.time()
            if sent.status_code not in (200, 201, 204):
                out(f"demo: the upload answered {sent.status_code}: {sent.text[:300]}")
                return 1
            out.step(
                f"uploaded {len(audio) / 1024:.0f} KiB over HTTP (presigned POST, "
                f"{(time.perf_counter() - started) * 1000:.0f} ms)"
            )
            job, seen = _poll(client, job_id, args.timeout, uploaded_epoch)
            result = _result_file(stack, job_id) if job and job.get("final") else None
            if stack.cognito is not None and job is not None:
                stack.wait_idle(timeout=10)
                summary["deletion"] = _owner_and_deletion(out, stack, client, job_id)
        stack.wait_idle(timeout=10)
        invocations = list(stack.invocations)
        alerts = stack.alerts()
        # every Transcribe job the run started (none for a bundle that transcribes itself)
        summary["transcribe_jobs"] = stack.transcribe_job_names()

    out.step("everything stopped (API, pumps, moto)")
    out()
    if job is None:
        out(f"demo: job {job_id} did not finish within {args.timeout:.0f} s")
        return 1
    label = "the bundle's speech-to-text model" if model_stt else STANDIN_LABEL
    return _report(
        out, args, job, result, seen, uploaded_epoch, invocations, alerts, summary, label
    )


def _sign_in(out: Console, stack: Any, user: str) -> dict[str, str]:
    """Sign `user` in to the local user pool as an app does: the Authorization header."""
    from devstack.cognito import sign_in

    tokens = sign_in(stack.cognito, user)
    out.step(
        f"signed in as {user} (local Cognito user pool {stack.cognito.pool_id}, "
        f"USER_PASSWORD_AUTH): an RS256 access token valid {tokens['ExpiresIn']} s"
    )
    return {"Authorization": f"Bearer {tokens['AccessToken']}"}


def _owner_and_deletion(out: Console, stack: Any, client: Any, job_id: str) -> dict[str, Any]:
    """The job is alice's: bob's token gets 404; alice deletes it and nothing stays."""
    owner = stack.job(job_id).owner
    out.step(f"the job records its owner: {owner}")
    bob = _sign_in(out, stack, "bob")
    seen_by_bob = client.get(f"/jobs/{job_id}", headers=bob)
    out.step(f"bob asks for it: {seen_by_bob.status_code} {seen_by_bob.json()['error']['code']}")
    deleted = client.delete(f"/jobs/{job_id}")
    deleted.raise_for_status()
    tombstone = deleted.json()
    listed = stack.client("s3").list_objects_v2(Bucket=stack.config.bucket).get("Contents", [])
    left = sorted(o["Key"] for o in listed if job_id in o["Key"])
    transcribe_left = [n for n in stack.transcribe_job_names() if job_id in n]
    out.step(
        f"alice deletes it: {tombstone['status']} at {tombstone['timings']['deleted_at']}; "
        f"objects left {left or 'none'}, Transcribe jobs left {transcribe_left or 'none'}"
    )
    return {
        "owner": owner,
        "other_user_status": seen_by_bob.status_code,
        "status": tombstone["status"],
        "objects_left": left,
        "transcribe_jobs_left": transcribe_left,
    }


def _result_file(stack: Any, job_id: str) -> dict[str, Any] | None:
    """The final verdict's full result (``results/{job_id}.json``): gate, text, windows."""
    from alertfusion.keys import result_key

    key = result_key(job_id)
    try:
        body = stack.client("s3").get_object(Bucket=stack.config.bucket, Key=key)["Body"]
    except Exception:
        return None
    found: dict[str, Any] = json.loads(body.read())
    return found


def show_result(out: Console, result: dict[str, Any]) -> None:
    """What the final verdict's full result adds: the gate, the text model, the windows."""
    gate = (result.get("audio") or {}).get("gate")
    if gate:
        shown = ", ".join(f"p({k})={v:.3g}" for k, v in gate["probabilities"].items())
        gating = (result.get("model") or {}).get("gate") == "binary"
        role = "binary gate" if gating else "binary model (not gating: gate none)"
        out(f"    {role}, selected window: {gate['label']}  {shown}")
    heard = result.get("transcript") or {}
    if heard.get("source") == "model":
        out(f"    transcript by speech-to-text model {heard.get('model')}: {heard.get('text')!r}")
    text = result.get("text") or {}
    if text.get("status") == "used":
        out(f"    text model: {text.get('label')} on {text.get('n_tokens')} tokens")
    else:
        out(f"    text model: skipped ({text.get('skipped_reason')}): {text.get('detail')}")
    windows = result.get("windows") or []
    if len(windows) > 1:
        labels = ", ".join(f"{w['start_s']:.0f}-{w['end_s']:.0f}s {w['label']}" for w in windows)
        rule = (
            "the most alarming window decides"
            if result.get("aggregation") == "max_emergency_window"
            else f"aggregated: {result.get('aggregation')}"
        )
        out(f"    windows: {labels} ({rule})")


def _describe(inv: Any) -> str:
    response = inv.response or {}
    if inv.function == "starter":
        records = response.get("records") or [{}]
        r = records[0]
        return f": upload {r.get('action')}, Transcribe {r.get('transcribe', '-')}"
    if inv.function == "classifier" and inv.trigger == "transcribe-event":
        return f": final verdict {response.get('action')} ({response.get('label')})"
    if inv.function == "classifier":
        return ": audio stage (preliminary verdict)"
    if inv.function == "sweeper":
        return f": checked {response.get('checked')} stuck jobs"
    return ""


def _poll(
    client: Any, job_id: str, timeout: float, uploaded_epoch: float
) -> tuple[dict[str, Any] | None, dict[str, float]]:
    """GET /jobs/{id} every POLL_S (faster than Retry-After, to time the verdicts) until
    final; the job and when (ms after the upload) each verdict was first seen."""
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    polls = 0
    while time.monotonic() < deadline:
        polls += 1
        answer = client.get(f"/jobs/{job_id}")
        answer.raise_for_status()
        job: dict[str, Any] = answer.json()
        now = (time.time() - uploaded_epoch) * 1000
        for stage in ("preliminary", "final"):
            if job.get(stage) is not None and stage not in seen:
                seen[stage] = now
        if job["is_final"]:
            seen["polls"] = polls
            return job, seen
        time.sleep(POLL_S)
    return None, seen


def _report(
    out: Console,
    args: argparse.Namespace,
    job: dict[str, Any],
    result: dict[str, Any] | None,
    seen: dict[str, float],
    uploaded_epoch: float,
    invocations: list[Any],
    alerts: list[dict[str, Any]],
    summary: dict[str, Any],
    standin_label: str,
) -> int:
    out(f"job {job['job_id']}: {job['status']} after {int(seen.get('polls', 0))} polls")
    if job["status"] != "DONE":
        failure = job.get("failure") or {}
        out(f"  failed: {failure.get('reason')}: {failure.get('detail')}")
    out()
    show_verdict(out, "Preliminary verdict (audio only)", job.get("preliminary"))
    out()
    show_verdict(out, "Final verdict", job.get("final"))
    if result is not None:
        show_result(out, result)
    out()
    timings = job["timings"]
    prelim_ms = _ms_after(timings.get("preliminary_at"), uploaded_epoch)
    final_ms = _ms_after(timings.get("final_at"), uploaded_epoch)
    out("Timings (this machine, moto over HTTP on 127.0.0.1)")
    if prelim_ms is not None:
        out(f"  upload completed → preliminary verdict recorded  {prelim_ms:7.0f} ms")
    if final_ms is not None:
        out(
            f"  upload completed → final verdict recorded        {final_ms:7.0f} ms"
            f"   ({standin_label}: no real Transcribe wait)"
        )
    for stage in ("preliminary", "final"):
        if stage in seen:
            out(
                f"  upload completed → {stage} seen by GET /jobs{' ' * (12 - len(stage))}"
                f"{seen[stage]:7.0f} ms"
            )
    by_kind: dict[str, list[Any]] = {}
    for inv in invocations:
        if inv.function == "sweeper" and not (inv.response or {}).get("checked"):
            continue
        by_kind.setdefault(f"{inv.function} ({inv.trigger})", []).append(inv)
    out("  per handler invocation: wall = inference + overhead (everything but inference)")
    for kind, runs in by_kind.items():
        for inv in runs:
            out(
                f"    {kind:<32} {inv.wall_ms:6.0f} ms = {inv.inference_ms:5.0f} + "
                f"{inv.overhead_ms:5.0f} ms{'' if inv.ok else '  FAILED: ' + str(inv.error)}"
            )
    alert_stages = [a["detail"]["stage"] for a in alerts]
    kinds = sorted({a["detail-type"] for a in alerts}) or [
        "EmergencyDetected" if summary.get("recipe") == "emergency-voice" else "AlertDetected"
    ]
    out(f"{' / '.join(kinds)} events on the bus: {', '.join(alert_stages) or 'none'}")
    summary.update(
        status=job["status"],
        preliminary=job.get("preliminary"),
        final=job.get("final"),
        upload_to_preliminary_ms=prelim_ms,
        upload_to_final_ms=final_ms,
        seen_ms=seen,
        invocations=[
            {
                "function": i.function,
                "trigger": i.trigger,
                "wall_ms": i.wall_ms,
                "inference_ms": i.inference_ms,
                "overhead_ms": i.overhead_ms,
                "ok": i.ok,
            }
            for i in invocations
        ],
        alerts=alert_stages,
        alert_types=sorted({a["detail-type"] for a in alerts}),
        transcribe=job.get("transcribe"),
    )
    if args.summary_json:
        args.summary_json.write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
    return 0 if job["status"] == "DONE" else 1


def main(argv: list[str] | None = None) -> int:
    # numpy's BLAS must be single-threaded before numpy loads (see the Makefile)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    args = parse_args(argv)
    console = Console(sys.stdout)
    LOG_FILE.parent.mkdir(parents=True, exist_ok=True)
    # Powertools' Logger binds to sys.stdout when first imported and its metrics print to
    # it: both go to the log file, the demo's own lines to the console.
    with LOG_FILE.open("w", encoding="utf-8") as log:
        sys.stdout = log
        try:
            code = run(args, console)
        except KeyboardInterrupt:
            console("demo: interrupted; everything stopped")
            code = 130
        finally:
            sys.stdout = console.stream
    console(f"handler logs and metrics: {LOG_FILE.relative_to(REPO)}")
    return code


if __name__ == "__main__":
    sys.exit(main())
