"""Backfills through the local stack: the state-machine definition CDK deploys, run by moto's
interpreter (gaps filled by devstack.stepfunctions), the real backfill function, starter
rule, classifier and Transcribe stand-in, with the real engine on the tiny bundles."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import functions.backfill.app  # noqa: F401  (Powertools binds to sys.stdout at import)
from alertfusion.backfill.service import BackfillService, BackfillStatus, service_from_environment
from alertfusion.jobs import JobStatus
from alertfusion.keys import job_id_for_listed_object
from alertfusion.probe import probe_audio
from alertfusion.probe.readers import BytesReader
from devstack.stack import LocalStack
from devstack.transcribe import StandInOutcome
from tests.e2e.conftest import TRANSCRIPTS, sample

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PREFIX = "archive/e2e/"
#: small batches so that a handful of objects makes several child workflows
SMALL_BATCHES = {
    "TRANSCRIBE_START_TPS_QUOTA": "1000",
    "BACKFILL_POLL_SECONDS": "1",
    "BACKFILL_BATCH_SIZE": "3",
}
SAMPLE_NAMES = ["ko-help-16k.wav", "ko-regular-22k.wav", "ko-violence-long-16k.wav"]


def upload_samples(stack: LocalStack, n: int, prefix: str = PREFIX) -> list[str]:
    keys = []
    for i in range(n):
        name = SAMPLE_NAMES[i % len(SAMPLE_NAMES)]
        key = f"{prefix}{i:03d}-{name}"
        stack.client("s3").put_object(
            Bucket=stack.config.bucket, Key=key, Body=sample(name), ContentType="audio/wav"
        )
        stack.standin.plan(key, StandInOutcome.completed(TRANSCRIPTS[name]))
        keys.append(key)
    return keys


def run_to_end(service: BackfillService, backfill_id: str, timeout: float = 120) -> BackfillStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = service.describe(backfill_id)
        if status.status != "RUNNING" and (status.final or status.status != "SUCCEEDED"):
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"backfill {backfill_id} still {status.status}")
        time.sleep(0.3)


def job_of(stack: LocalStack, key: str) -> Any:
    head = stack.client("s3").head_object(Bucket=stack.config.bucket, Key=key)
    return stack.job(job_id_for_listed_object(key, head["ETag"]))


@pytest.fixture
def backfill_stack(make_stack: Callable[..., LocalStack]) -> LocalStack:
    return make_stack(backfill_env=SMALL_BATCHES)


def test_every_object_becomes_a_done_job_and_a_rerun_makes_none(
    backfill_stack: LocalStack,
) -> None:
    stack = backfill_stack
    keys = upload_samples(stack, 7)
    service = service_from_environment()

    first = run_to_end(service, service.start(PREFIX, None).backfill_id)
    assert first.status == "SUCCEEDED" and first.final
    assert first.summary.objects == 7 and first.summary.batches == 3
    assert first.summary.new_jobs == 7
    assert first.summary.states == {"DONE": 7}
    assert sum(first.summary.labels.values()) == 7
    for key in keys:
        job = job_of(stack, key)
        assert job.status is JobStatus.DONE and job.final is not None
        assert job.object_key == key and job.transcribe_status == "COMPLETED"
    transcribe_jobs = sorted(stack.transcribe_job_names())
    assert len(transcribe_jobs) == 7
    # the run's results, where GET /backfills and the summary read them
    listed = stack.client("s3").list_objects_v2(
        Bucket=stack.config.bucket, Prefix=f"backfills/{first.backfill_id}/"
    )
    names = sorted(o["Key"].rsplit("/", 1)[-1] for o in listed["Contents"])
    assert names == ["000000000.json", "000000003.json", "000000006.json", "summary.json"]

    second = run_to_end(service, service.start(PREFIX, None).backfill_id)
    assert second.status == "SUCCEEDED"
    assert second.summary.new_jobs == 0
    assert second.summary.actions == {"existing": 7}
    assert second.summary.transcribe_jobs == 0
    assert sorted(stack.transcribe_job_names()) == transcribe_jobs
    assert len(stack.all_jobs()) == 7
    assert not stack.pump_errors


def test_an_undecodable_object_fails_its_job_and_the_run_succeeds(
    backfill_stack: LocalStack,
) -> None:
    stack = backfill_stack
    keys = upload_samples(stack, 3)
    broken = f"{PREFIX}zz-broken.wav"
    stack.client("s3").put_object(
        Bucket=stack.config.bucket,
        Key=broken,
        Body=os.urandom(4096),
        ContentType="audio/wav",
    )
    service = service_from_environment()
    status = run_to_end(service, service.start(PREFIX, None).backfill_id)

    assert status.status == "SUCCEEDED"
    assert status.summary.states == {"DONE": 3, "FAILED": 1}
    assert status.summary.failures == {"UNSUPPORTED_FORMAT": 1}
    assert status.summary.actions == {"new": 3, "rejected": 1}
    failed = job_of(stack, broken)
    assert failed.status is JobStatus.FAILED
    assert failed.failure_reason == "UNSUPPORTED_FORMAT"
    assert all(job_of(stack, key).status is JobStatus.DONE for key in keys)
    assert len(stack.transcribe_job_names()) == 3  # none for the refused object


def test_a_failed_run_is_redriven_and_only_its_failed_batch_runs_again(
    backfill_stack: LocalStack,
) -> None:
    stack = backfill_stack
    keys = upload_samples(stack, 6)  # two batches of three
    stack.fail_backfill_steps("admit", times=1)
    service = service_from_environment()
    backfill_id = service.start(PREFIX, None).backfill_id

    failed = run_to_end(service, backfill_id)
    assert failed.status == "FAILED"
    assert failed.error == "States.ExceedToleratedFailureThreshold"
    assert failed.summary.objects == 3  # the batch that succeeded wrote its results

    service.redrive(backfill_id)
    redriven = run_to_end(service, backfill_id)
    assert redriven.status == "SUCCEEDED" and redriven.final
    assert redriven.summary.objects == 6
    assert redriven.summary.new_jobs == 6
    assert redriven.summary.states == {"DONE": 6}
    assert all(job_of(stack, key).status is JobStatus.DONE for key in keys)
    # the batch that had succeeded was not admitted again: one Transcribe job per object
    assert len(stack.transcribe_job_names()) == 6
    assert len(stack.all_jobs()) == 6


def test_a_dry_run_counts_minutes_and_cost_and_starts_nothing(
    backfill_stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    from alertfusion.cli import main

    stack = backfill_stack
    upload_samples(stack, 4)
    location = f"s3://{stack.config.bucket}/{PREFIX}"
    assert main(["backfill", location, "--dry-run", "--json"]) == 0
    estimate = json.loads(capsys.readouterr().out)
    assert estimate["objects"] == 4 and estimate["existing_jobs"] == 0
    seconds = [
        probe_audio(BytesReader(sample(SAMPLE_NAMES[i % 3]))).duration_s or 0 for i in range(4)
    ]
    assert estimate["audio_minutes"] == pytest.approx(sum(seconds) / 60, abs=0.01)
    assert estimate["cost"]["by_service"]["Transcribe"] > 0
    sfn = stack.client("stepfunctions")
    machine = os.environ["BACKFILL_STATE_MACHINE_ARN"]
    assert sfn.list_executions(stateMachineArn=machine)["executions"] == []
    assert stack.all_jobs() == []
    assert stack.transcribe_job_names() == []
    assert stack.queue_depth("work") == 0


def test_a_backfill_with_a_new_bundle_version_keeps_both_verdicts_and_compares_them(
    make_stack: Callable[..., LocalStack], tiny_bundle_int8: Path
) -> None:
    # gate off: every verdict uses the transcript, so the reclassification's use of it shows
    stack = make_stack(backfill_env=SMALL_BATCHES, env={"FUSION_GATE": "none"})
    keys = upload_samples(stack, 4)
    service = service_from_environment()
    old = run_to_end(service, service.start(PREFIX, None).backfill_id)
    assert old.status == "SUCCEEDED"
    old_version = job_of(stack, keys[0]).final.bundle_version
    transcribe_jobs = sorted(stack.transcribe_job_names())

    # the classifier now serves the new bundle (a deploy of the new version)
    new_version = json.loads((tiny_bundle_int8 / "manifest.json").read_text())["bundle_version"]
    assert new_version != old_version
    os.environ["MODEL_BUNDLE"] = str(tiny_bundle_int8)
    stack._reset_runtime()
    upgrade = run_to_end(service, service.start(PREFIX, new_version).backfill_id)

    assert upgrade.status == "SUCCEEDED"
    assert upgrade.summary.actions == {"reclassify": 4}
    assert upgrade.summary.new_jobs == 0
    comparison = upgrade.summary.comparison
    assert comparison is not None
    assert comparison.target_version == new_version
    assert comparison.baseline_versions == [old_version]
    assert comparison.compared == 4
    assert sum(sum(row.values()) for row in comparison.table.values()) == 4
    for key in keys:
        job = job_of(stack, key)
        assert job.status is JobStatus.DONE
        assert job.final.bundle_version == old_version  # the job's own verdict is kept
        assert set(job.verdicts) == {old_version, new_version}
        assert job.verdicts[new_version].text_source == "transcribe"
    assert sorted(stack.transcribe_job_names()) == transcribe_jobs  # no new Transcribe job

    # the same upgrade again changes nothing
    again = run_to_end(service, service.start(PREFIX, new_version).backfill_id)
    assert again.summary.actions == {"existing": 4}
    assert again.summary.comparison is not None and again.summary.comparison.compared == 4


def test_the_cli_waits_and_prints_the_summary(
    backfill_stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    from alertfusion.cli import main

    upload_samples(backfill_stack, 2)
    location = f"s3://{backfill_stack.config.bucket}/{PREFIX}"
    assert main(["backfill", location, "--wait", "--poll", "0.3"]) == 0
    out = capsys.readouterr()
    assert "SUCCEEDED" in out.out and "2 new" in out.out
    assert "batches" in out.err  # the progress line
    assert main(["backfill", "s3://another-bucket/archive/", "--dry-run"]) == 2
    assert "FORBIDDEN_LOCATION" in capsys.readouterr().err
