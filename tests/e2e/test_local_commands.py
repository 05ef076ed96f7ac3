"""The local commands as a user runs them, in subprocesses: `make demo`, the demo with its
own recording, `make serve` + `make smoke` (the post-deploy smoke test against the local
moto-backed stack), each with a timeout, leaving no process or port behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import DEMO_BUNDLE, REPO, SAMPLES
from tests.e2e.conftest import free_port, port_open

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

API_KEY = "local-smoke-test-key-0123456789"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT")}
    env.update(OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    return env


def _run(args: list[str], *, timeout: int, **env: str) -> subprocess.CompletedProcess[str]:
    """A local command as a user runs it, from the repository, its output captured."""
    return subprocess.run(
        args, cwd=REPO, env=_env(**env), capture_output=True, text=True, timeout=timeout
    )


def _ports(output: str) -> list[int]:
    return [int(p) for p in re.findall(r"http://127\.0\.0\.1:(\d+)", output)]


def test_make_demo_runs_the_pipeline_end_to_end(tmp_path: Path) -> None:
    """The README's first command, with the full-size demo bundle `make setup` builds."""
    summary_path = tmp_path / "summary.json"
    done = _run(
        ["make", "--no-print-directory", "demo", f"ARGS=--summary-json {summary_path}"],
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "[local Transcribe stand-in]" in out
    assert "Preliminary verdict (audio only)" in out and "Final verdict" in out
    assert "upload completed → preliminary verdict recorded" in out
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    assert summary["status"] == "DONE"
    assert summary["bundle"].endswith(str(DEMO_BUNDLE.relative_to(REPO)))
    assert summary["preliminary"]["decided_by"] in ("audio_only", "gate")
    assert summary["final"] is not None
    assert summary["upload_to_preliminary_ms"] <= summary["upload_to_final_ms"]
    assert all(i["ok"] for i in summary["invocations"])
    assert {i["function"] for i in summary["invocations"]} >= {"starter", "classifier"}
    ports = _ports(out)
    assert ports and not any(port_open(p) for p in ports), "a server outlived the demo"


def test_make_demo_runs_a_recipes_demo_bundle(tmp_path: Path) -> None:
    """`make demo ARGS="--recipe infant-cry"`: the recipe's demo bundle (built when missing),
    no Transcribe (the recipe has no text model), the audio verdict final, in its labels."""
    summary_path = tmp_path / "summary.json"
    done = _run(
        [
            "make",
            "--no-print-directory",
            "demo",
            f"ARGS=--recipe infant-cry --summary-json {summary_path}",
        ],
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (REPO / "build" / "models" / "infant-cry" / "manifest.json").is_file()
    assert "Transcribe skipped" in done.stdout
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    assert summary["status"] == "DONE" and summary["recipe"] == "infant-cry"
    final = summary["final"]
    assert final["recipe"] == "infant-cry" and final["label"] in ("hungry", "other")
    assert final["audio_only_reason"] == "TRANSCRIBE_SKIPPED"
    assert summary["transcribe"]["status"] == "SKIPPED"
    assert summary["alerts"] == (["preliminary", "final"] if final["is_emergency"] else [])
    assert summary["alert_types"] == (["AlertDetected"] if final["is_emergency"] else [])


def test_demo_with_your_own_recording_and_text(tmp_path: Path, tiny_bundle: Path) -> None:
    own = tmp_path / "내 녹음.wav"
    own.write_bytes((SAMPLES / "ko-regular-22k.wav").read_bytes())
    summary_path = tmp_path / "summary.json"
    done = _run(
        [
            sys.executable,
            "-m",
            "devstack.demo",
            "--audio",
            str(own),
            "--text",
            "살려주세요",
            "--bundle",
            str(tiny_bundle),
            "--summary-json",
            str(summary_path),
        ],
        timeout=300,
        FUSION_GATE="none",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "'살려주세요' (--text)" in done.stdout
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    assert summary["final"]["text_source"] == "transcribe"
    assert summary["final"]["decided_by"] == "fusion"


def test_demo_on_a_bundle_that_transcribes_itself_calls_no_transcribe(
    tmp_path: Path, offline_bundle: Path
) -> None:
    """`make demo ARGS="--bundle DIR"` on the offline recipe's bundle: its own speech-to-text
    model makes the transcript in the one classifier invocation; no Transcribe job at all."""
    summary_path = tmp_path / "summary.json"
    done = _run(
        [
            sys.executable,
            "-m",
            "devstack.demo",
            "--bundle",
            str(offline_bundle),
            "--summary-json",
            str(summary_path),
        ],
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    assert summary["status"] == "DONE"
    assert summary["transcribe_jobs"] == []
    assert summary["transcribe"]["status"] == "SKIPPED"
    assert summary["final"]["text_source"] in ("model", None)  # None: the model heard nothing
    assert summary["preliminary"] is None, "one final verdict, no second stage"
    classifier = [i for i in summary["invocations"] if i["function"] == "classifier"]
    assert len(classifier) == 1


def test_demo_refuses_a_missing_recording_or_bundle(tmp_path: Path) -> None:
    for args in (["--audio", str(tmp_path / "nothing.wav")], ["--bundle", str(tmp_path)]):
        done = _run(
            [sys.executable, "-m", "devstack.demo", *args],
            timeout=120,
        )
        assert done.returncode == 2, done.stdout + done.stderr
        assert "demo: no " in done.stdout


@pytest.fixture
def served(tiny_bundle: Path, tmp_path: Path) -> Iterator[str]:
    """`make serve`'s program on a free port with the tiny bundle and an API key."""
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack.serve", "--port", str(port)],
        cwd=REPO,
        env=_env(MODEL_BUNDLE=str(tiny_bundle), API_KEY=API_KEY),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve did not answer /healthz"
            time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            code = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
            log.close()
        output = (tmp_path / "serve.log").read_text()
        moto_ports = _ports(output)
        assert code == 0 and "serve: stopped" in output, output[-2000:]
        assert not any(port_open(p) for p in [port, *moto_ports]), "a server outlived serve"


def test_make_smoke_passes_against_the_local_stack(served: str) -> None:
    done = _run(
        ["make", "--no-print-directory", "smoke", f"ARGS=--url {served} --api-key {API_KEY}"],
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "smoke: passed" in done.stdout
    assert re.search(r"GET /readyz: bundle \S+, self-check passed on ", done.stdout)
    assert re.search(r"GET /jobs/\w+: DONE", done.stdout)
    assert "POST /predict:" in done.stdout


def test_smoke_fails_clearly(served: str) -> None:
    wrong = _run(
        [sys.executable, "-m", "devstack.smoke", "--url", served, "--api-key", "x" * 20],
        timeout=120,
    )
    assert wrong.returncode == 1
    assert "smoke: FAILED at uploads: POST /uploads answered 401" in wrong.stderr
    dead = _run(
        [sys.executable, "-m", "devstack.smoke", "--url", f"http://127.0.0.1:{free_port()}"],
        timeout=120,
    )
    assert dead.returncode == 1 and "smoke: FAILED at healthz" in dead.stderr


def test_smoke_finds_the_api_from_the_deployed_stacks_outputs(served: str) -> None:
    """Without --url: the CloudFormation outputs (ApiUrl, ApiKeyId) and the key's value
    from API Gateway, here served by a moto standing in for the AWS account."""
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        aws = {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "smoke",
            "AWS_SECRET_ACCESS_KEY": "smoke",
            "AWS_DEFAULT_REGION": "ap-northeast-2",
        }
        import boto3

        session = boto3.session.Session(
            aws_access_key_id="smoke", aws_secret_access_key="smoke", region_name="ap-northeast-2"
        )
        gateway = session.client("apigateway", endpoint_url=aws["AWS_ENDPOINT_URL"])
        key_id = gateway.create_api_key(name="client", value=API_KEY, enabled=True)["id"]
        cloudformation = session.client("cloudformation", endpoint_url=aws["AWS_ENDPOINT_URL"])
        outputs = {
            "alertfusion-smoke-api": {"ApiUrl": served + "/", "ApiKeyId": key_id},
            "alertfusion-smoke-pipeline": {"AudioBucketName": "alertfusion-smoke-audio"},
        }
        for stack, values in outputs.items():
            template = {
                "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {k: {"Value": v} for k, v in values.items()},
            }
            cloudformation.create_stack(StackName=stack, TemplateBody=json.dumps(template))
        done = _run(
            [sys.executable, "-m", "devstack.smoke", "--stage", "smoke", "--timeout", "60"],
            timeout=300,
            **aws,
        )
        missing = _run(
            [sys.executable, "-m", "devstack.smoke", "--stage", "absent"],
            timeout=120,
            **aws,
        )
    finally:
        from moto.core.base_backend import BackendDict

        moto.stop()
        assert moto._server is not None
        moto._server.server_close()  # stop() leaves the listening socket open
        BackendDict.reset()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "stacks alertfusion-smoke-api, alertfusion-smoke-pipeline; API key set" in done.stdout
    assert "audio bucket alertfusion-smoke-audio" in done.stdout
    assert "smoke: passed" in done.stdout
    assert missing.returncode == 2
    assert "cannot read stack alertfusion-absent-api" in missing.stderr
