"""`make smoke`: a post-deploy smoke test of the HTTP API and the asynchronous pipeline.

    python -m devstack.smoke                       # the deployed stage "prod"
    python -m devstack.smoke --stage dev --region ap-northeast-2
    python -m devstack.smoke --url http://127.0.0.1:8000 [--api-key KEY]

Against a deployed stack it reads the CloudFormation outputs of ``alertfusion-{stage}-api``
(``ApiUrl``, ``ApiKeyId``; the key's value then comes from API Gateway) and of
``alertfusion-{stage}-pipeline`` (``AudioBucketName``) with the default AWS credentials.
With ``--url`` it needs no AWS at all (``--api-key`` or ``ALERTFUSION_API_KEY`` when the
server wants one); the tests run it so against ``make serve``'s local stack.

Steps: ``GET /healthz``; ``GET /readyz``, whose bundle self-check on the serving CPU must
have passed (alertfusion.selfcheck; an fp32 fallback counts, and is reported); ``POST
/uploads``; the recording uploaded with the presigned POST; ``GET /jobs/{id}`` (honouring
``Retry-After``) until the job is final, which must be DONE with a final verdict; ``POST
/predict`` with the same recording and its transcript, whose answer must carry a verdict with
probabilities summing to 1 and the original server's keys.
Exit status 0 when every step passed, 1 with the failing step on stderr, 2 for bad
arguments or unreadable stack outputs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_AUDIO = REPO / "samples" / "ko-help-16k.wav"
USER_AGENT = "alertfusion-smoke/1"
LEGACY_KEYS = ("result", "audio_label", "text_label", "combined_label", "combined_feature")


class SmokeFailure(Exception):
    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message


class UsageError(Exception):
    pass


@dataclass(frozen=True)
class Target:
    url: str
    api_key: str | None
    source: str
    bucket: str | None = None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.smoke",
        description="Smoke-test a deployed (or local) alertfusion API end to end.",
    )
    parser.add_argument("--url", help="base URL of the API (skips CloudFormation)")
    parser.add_argument("--api-key", help="x-api-key (default: ALERTFUSION_API_KEY)")
    parser.add_argument("--stage", default="prod", help="deployment stage (stack names)")
    parser.add_argument("--region", help="AWS region of the stacks (default: the SDK's)")
    parser.add_argument("--audio", type=Path, default=DEFAULT_AUDIO, help="recording to send")
    parser.add_argument("--text", help="transcript for /predict (default: the sample's)")
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for the job (Transcribe)"
    )
    return parser.parse_args(argv)


def _outputs(cloudformation: Any, stack: str) -> dict[str, str]:
    try:
        found = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except Exception as exc:
        raise UsageError(f"cannot read stack {stack}: {exc}") from exc
    return {o["OutputKey"]: o["OutputValue"] for o in found[0].get("Outputs", [])}


def resolve_target(args: argparse.Namespace) -> Target:
    """The API's URL and key: from the arguments, else from the deployed stacks."""
    if args.url:
        key = args.api_key or os.environ.get("ALERTFUSION_API_KEY")
        return Target(args.url.rstrip("/"), key, "--url")
    import boto3

    session = boto3.session.Session(region_name=args.region)
    cloudformation = session.client("cloudformation")
    api_stack, pipeline_stack = (
        f"alertfusion-{args.stage}-api",
        f"alertfusion-{args.stage}-pipeline",
    )
    api = _outputs(cloudformation, api_stack)
    if "ApiUrl" not in api:
        raise UsageError(f"stack {api_stack} has no ApiUrl output")
    key = args.api_key
    if key is None and "ApiKeyId" in api:
        try:
            key = session.client("apigateway").get_api_key(
                apiKey=api["ApiKeyId"], includeValue=True
            )["value"]
        except Exception as exc:
            raise UsageError(f"cannot read the API key {api['ApiKeyId']}: {exc}") from exc
    bucket = _outputs(cloudformation, pipeline_stack).get("AudioBucketName")
    return Target(api["ApiUrl"].rstrip("/"), key, f"stacks {api_stack}, {pipeline_stack}", bucket)


class Smoke:
    def __init__(self, target: Target, log: Any) -> None:
        import httpx

        headers = {"user-agent": USER_AGENT}
        if target.api_key:
            headers["x-api-key"] = target.api_key
        self.target = target
        self.client = httpx.Client(base_url=target.url, headers=headers, timeout=60)
        self.log = log
        self.t0 = time.perf_counter()

    def say(self, line: str) -> None:
        self.log(f"  {time.perf_counter() - self.t0:6.2f}s  {line}")

    def request(self, step: str, method: str, path: str, expect: tuple[int, ...], **kw: Any) -> Any:
        import httpx

        try:
            response = self.client.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise SmokeFailure(step, f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code not in expect:
            raise SmokeFailure(
                step, f"{method} {path} answered {response.status_code}: {response.text[:400]}"
            )
        return response

    def run(self, audio: Path, text: str, timeout: float) -> dict[str, Any]:
        import httpx

        data = audio.read_bytes()
        self.request("healthz", "GET", "/healthz", (200,))
        self.say("GET /healthz: 200")
        ready = self.request("readyz", "GET", "/readyz", (200,)).json()
        check = ready.get("selfcheck") or {}
        if check.get("status") not in ("passed", "fallback"):
            raise SmokeFailure("readyz", f"the bundle's self-check did not pass: {ready}")
        self.say(
            f"GET /readyz: bundle {ready.get('bundle_version')}, self-check {check['status']} "
            f"on {check.get('cpu')}"
            + (f" (fp32 fallback: {', '.join(check['fallback'])})" if check.get("fallback") else "")
        )

        created = self.request(
            "uploads", "POST", "/uploads", (201,), json={"filename": audio.name}
        ).json()
        job_id, post = created.get("job_id"), created.get("upload") or {}
        if not job_id or not post.get("url") or not isinstance(post.get("fields"), dict):
            raise SmokeFailure("uploads", f"no job id or presigned POST in {created}")
        self.say(f"POST /uploads: job {job_id}")

        try:
            sent = httpx.post(
                post["url"],
                data=post["fields"],
                files={"file": (audio.name, data, post.get("content_type", "audio/wav"))},
                timeout=120,
            )
        except httpx.HTTPError as exc:
            raise SmokeFailure("upload", f"{type(exc).__name__}: {exc}") from exc
        if sent.status_code not in (200, 201, 204):
            raise SmokeFailure("upload", f"S3 answered {sent.status_code}: {sent.text[:400]}")
        uploaded = time.perf_counter()
        self.say(f"upload ({len(data)} bytes, presigned POST): {sent.status_code}")

        job = self._poll(job_id, timeout)
        waited = time.perf_counter() - uploaded
        if job.get("status") != "DONE" or not job.get("final"):
            raise SmokeFailure(
                "jobs", f"job {job_id} ended {job.get('status')}: {json.dumps(job)[:600]}"
            )
        final, preliminary = job["final"], job.get("preliminary") or {}
        self.say(
            f"GET /jobs/{job_id}: DONE after {waited:.1f} s; preliminary "
            f"{preliminary.get('label')}, final {final['label']}"
            + (
                f" (audio only: {final['audio_only_reason']})"
                if final.get("audio_only_reason")
                else ""
            )
        )

        files = {"audio_file": (audio.name, data, "application/octet-stream")}
        form = {"text_input": text} if text else {}
        answer = self.request("predict", "POST", "/predict", (200,), files=files, data=form).json()
        missing = [k for k in ("label", "probabilities", *LEGACY_KEYS) if k not in answer]
        if missing:
            raise SmokeFailure("predict", f"the answer lacks {missing}")
        probabilities = answer.get("probabilities")
        if probabilities is not None:
            total = sum(probabilities.values())
            if not math.isclose(total, 1.0, abs_tol=1e-4):
                raise SmokeFailure("predict", f"probabilities sum to {total}")
        self.say(f"POST /predict: {answer['label']} (decided by {answer.get('decided_by')})")
        return {"job_id": job_id, "job": job, "predict_label": answer["label"]}

    def _poll(self, job_id: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            response = self.request("jobs", "GET", f"/jobs/{job_id}", (200,))
            job: dict[str, Any] = response.json()
            if job.get("is_final"):
                return job
            if time.monotonic() > deadline:
                raise SmokeFailure(
                    "jobs", f"job {job_id} still {job.get('status')} after {timeout:.0f} s"
                )
            try:
                wait = float(response.headers.get("retry-after", "1"))
            except ValueError:
                wait = 1.0
            time.sleep(min(max(wait, 0.2), 5.0, max(0.0, deadline - time.monotonic())))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = sys.stdout

    def log(line: str) -> None:
        print(line, file=out, flush=True)

    if not args.audio.is_file():
        sys.stderr.write(f"smoke: no such recording: {args.audio}\n")
        return 2
    text = args.text
    if text is None:
        known = json.loads((REPO / "samples" / "transcripts.json").read_text(encoding="utf-8"))
        text = known.get(args.audio.name, "")
    try:
        target = resolve_target(args)
    except UsageError as exc:
        sys.stderr.write(f"smoke: {exc}\n")
        return 2
    key = "set" if target.api_key else "none"
    log(f"smoke test of {target.url} ({target.source}; API key {key})")
    if target.bucket:
        log(f"  audio bucket {target.bucket}")
    smoke = Smoke(target, log)
    try:
        smoke.run(args.audio, text, args.timeout)
    except SmokeFailure as exc:
        sys.stderr.write(f"smoke: FAILED at {exc.step}: {exc.message}\n")
        return 1
    finally:
        smoke.client.close()
    log("smoke: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
