"""A job keeps the verdict of each bundle version: written once per version, only on a DONE
job, never changing its state or its own final verdict; old records still load; the
classifier's reclassify stage (what a backfill naming a bundle version sends)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from alertfusion.jobs import Job, JobStatus, Verdict
from alertfusion.jobs.model import version_verdict_attribute
from alertfusion.keys import new_job_id
from alertfusion.pipeline import get_context, reclassify_job
from tests.integration.conftest import BUCKET, AwsEnv
from tests.integration.test_job_store import upload
from tests.pipeline_doubles import BUNDLE_VERSION, FakeClassifier, make_manifest, make_result

pytestmark = pytest.mark.integration


def verdict(label: str, version: str) -> Verdict:
    return Verdict.from_result(
        make_result(label, bundle_version=version), decided_at=datetime.now(UTC)
    )


def done_job(aws: AwsEnv, key: str = "archive/a.wav") -> str:
    """A DONE job of `key`, naming the object's ETag when the object exists (every read of
    a job's audio is pinned to it)."""
    store = aws.store
    job_id = new_job_id()
    info = upload(key)
    try:
        info = replace(info, etag=aws.s3.head_object(Bucket=BUCKET, Key=key)["ETag"].strip('"'))
    except aws.s3.exceptions.ClientError:
        pass
    store.receive(job_id, info)
    store.finish(job_id, verdict("help", "v1"), latency_ms=None)
    return job_id


def test_the_final_verdict_is_kept_under_its_version_and_others_are_added_once(
    aws: AwsEnv,
) -> None:
    store = aws.store
    job_id = done_job(aws)
    job = store.get(job_id)
    assert job is not None and set(job.stored_verdicts) == {"v1"}

    added = store.add_version_verdict(job_id, verdict("violence", "v2"))
    assert added is not None
    assert added.status is JobStatus.DONE
    assert added.final is not None and added.final.label == "help"  # unchanged
    assert {v: added.verdicts[v].label for v in added.verdicts} == {"v1": "help", "v2": "violence"}
    # once per version: a second write (a redelivered task) changes nothing
    assert store.add_version_verdict(job_id, verdict("regular", "v2")) is None
    again = store.get(job_id)
    assert again is not None and again.verdicts["v2"].label == "violence"


def test_a_version_verdict_needs_a_done_job(aws: AwsEnv) -> None:
    store = aws.store
    job_id = new_job_id()
    assert store.add_version_verdict(job_id, verdict("help", "v2")) is None  # no job
    store.receive(job_id, upload("archive/b.wav"))
    assert store.add_version_verdict(job_id, verdict("help", "v2")) is None  # RECEIVED
    job = store.get(job_id)
    assert job is not None and job.verdicts == {}


def test_a_record_written_before_versions_were_kept_still_loads() -> None:
    old = {
        "job_id": "01JD3W7Q5V2ZK8F9X4M6N0P1RS",
        "status": "DONE",
        "created_at": "2026-11-21T09:14:03.000Z",
        "updated_at": "2026-11-21T09:14:05.120Z",
        "expires_at": 1800000000,
        "final": verdict("theft", "v0").model_dump(mode="json"),
    }
    job = Job.model_validate(old)
    assert job.stored_verdicts == {} and job.backfill_id is None
    assert {v: x.label for v, x in job.verdicts.items()} == {"v0": "theft"}
    newer = Job.model_validate(
        {**old, version_verdict_attribute("v9"): verdict("help", "v9").model_dump(mode="json")}
    )
    assert set(newer.verdicts) == {"v0", "v9"}


def test_reclassify_records_the_served_version_and_never_starts_transcribe(
    aws: AwsEnv,
) -> None:
    aws.put("archive/a.wav", b"RIFF....WAVE")  # the fake classifier never decodes
    job_id = done_job(aws)
    # the fake's results and manifest carry BUNDLE_VERSION: the version it serves
    served = FakeClassifier(audio_label="violence")
    outcome = reclassify_job(job_id, BUNDLE_VERSION, served, ctx=get_context())
    assert outcome.action == "recorded" and outcome.label == "violence"
    job = aws.job(job_id)
    assert job.final is not None and job.final.bundle_version == "v1"
    assert job.verdicts[BUNDLE_VERSION].label == "violence"
    assert aws.transcribe.list_transcription_jobs()["TranscriptionJobSummaries"] == []
    # the same task again: already recorded, nothing classified
    calls = len(served.calls)
    assert reclassify_job(job_id, BUNDLE_VERSION, served).action == "already_recorded"
    assert len(served.calls) == calls


def test_reclassify_refuses_a_version_the_classifier_does_not_serve(aws: AwsEnv) -> None:
    aws.put("archive/a.wav", b"RIFF....WAVE")
    job_id = done_job(aws)
    served = FakeClassifier(manifest=make_manifest(BUNDLE_VERSION))
    outcome = reclassify_job(job_id, "v3", served)
    assert outcome.action == "wrong_bundle"
    assert served.calls == []
    assert set(aws.job(job_id).verdicts) == {"v1"}
