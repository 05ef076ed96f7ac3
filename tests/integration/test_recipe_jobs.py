"""Jobs on a bundle of another recipe (infant-cry: no text model) against moto: Transcribe
never starts, the audio stage's verdict is final, its alert is an AlertDetected event with
the recipe's labels; a job names its bundle at POST /uploads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from alertfusion.catalog import reset_catalog
from alertfusion.engine import get_engine, reset_engine
from alertfusion.errors import ReasonCode
from alertfusion.jobs import JobStatus
from alertfusion.keys import new_job_id
from alertfusion.settings import engine_settings
from tests.conftest import SAMPLES
from tests.integration.conftest import BUCKET, AwsEnv
from tests.pipeline_doubles import FakeClassifier
from tests.recipe_bundles import identity_scalers, recipe_dict, write_bundle

pytestmark = pytest.mark.integration

CRY_WAV = (SAMPLES / "ko-help-16k.wav").read_bytes()
INFANT_LABELS = {"hungry", "other"}


@pytest.fixture(scope="module")
def infant_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bundle(
        identity_scalers(recipe_dict("infant-cry")), tmp_path_factory.mktemp("infant")
    )


@pytest.fixture
def serving(
    monkeypatch: pytest.MonkeyPatch, tiny_bundle: Path, infant_bundle: Path
) -> Iterator[None]:
    """The default bundle today's system, `infant-cry` a named one (MODEL_BUNDLES)."""
    monkeypatch.setenv("MODEL_BUNDLE", str(tiny_bundle))
    monkeypatch.setenv("MODEL_BUNDLES", f"infant-cry={infant_bundle}")
    monkeypatch.setenv("SELFCHECK", "false")
    engine_settings.cache_clear()
    reset_catalog()
    reset_engine()
    yield
    engine_settings.cache_clear()
    reset_catalog()
    reset_engine()


def _labels() -> set[str]:
    raw = recipe_dict("infant-cry")
    return {
        label["name"] for label in raw["models"][raw["decision"]["fusion"]["models"][0]]["labels"]
    }


@pytest.mark.usefixtures("serving")
def test_a_job_naming_a_bundle_without_text_model_never_starts_transcribe(aws: AwsEnv) -> None:
    assert _labels() == INFANT_LABELS
    job_id = new_job_id()
    key = f"uploads/{job_id}.wav"
    aws.store.create_pending(job_id, object_key=key, content_type="audio/wav", bundle="infant-cry")
    aws.put(key, CRY_WAV)
    (out,) = aws.run_starter(aws.upload_event(key))["records"]
    assert (out["action"], out["transcribe"]) == ("accepted", "skipped")
    assert aws.transcribe_jobs() == []
    job = aws.job(job_id)
    assert (job.transcribe_status, job.transcribe_detail) == (
        "SKIPPED",
        "the recipe has no text model",
    )

    default = FakeClassifier()  # the handler's classifier: the job's bundle is another
    (stage,) = aws.drain(default)
    assert default.calls == []
    assert (stage.action, stage.status) == ("recorded", JobStatus.DONE)
    job = aws.job(job_id)
    assert job.preliminary is not None and job.final is not None
    assert job.final.recipe == "infant-cry" and job.final.label in INFANT_LABELS
    assert job.final.is_emergency == (job.final.label == "hungry")
    assert job.final.audio_only_reason is ReasonCode.TRANSCRIBE_SKIPPED
    assert job.final.audio_only_detail == "the recipe has no text model"
    assert set(job.final.probabilities or {}) == INFANT_LABELS
    assert aws.transcribe_jobs() == []
    stored = json.loads(
        aws.s3.get_object(Bucket=BUCKET, Key=f"results/{job_id}.json")["Body"].read()
    )
    assert stored["model"]["recipe"] == "infant-cry" and stored["text"]["skipped_reason"] == (
        "NO_TEXT_MODEL"
    )
    alerts = aws.alerts()
    expected = ["preliminary", "final"] if job.final.is_emergency else []
    assert sorted(a["detail"]["stage"] for a in alerts) == sorted(expected)
    for alert in alerts:
        assert alert["detail-type"] == "AlertDetected"
        assert alert["detail"]["recipe"] == "infant-cry"
        assert alert["detail"]["label"] == "hungry" and "label_display" in alert["detail"]


def test_the_default_bundle_without_text_model_skips_transcribe_for_dropped_files(
    aws: AwsEnv, monkeypatch: pytest.MonkeyPatch, infant_bundle: Path
) -> None:
    monkeypatch.setenv("MODEL_BUNDLE", str(infant_bundle))
    monkeypatch.delenv("MODEL_BUNDLES", raising=False)
    monkeypatch.setenv("SELFCHECK", "false")
    engine_settings.cache_clear()
    reset_catalog()
    reset_engine()
    try:
        key = "uploads/incoming/cry.wav"
        aws.put(key, CRY_WAV)
        (out,) = aws.run_starter(aws.upload_event(key))["records"]
        assert (out["action"], out["transcribe"]) == ("accepted", "skipped")
        (stage,) = aws.drain(get_engine())
        assert stage.status is JobStatus.DONE and stage.label in INFANT_LABELS
        assert aws.transcribe_jobs() == []
        job = aws.job(out["job_id"])
        assert job.bundle is None and job.final is not None
        assert job.final.recipe == "infant-cry"
    finally:
        engine_settings.cache_clear()
        reset_catalog()
        reset_engine()


@pytest.mark.usefixtures("serving")
def test_a_job_naming_a_bundle_no_longer_served_fails_with_the_reason(aws: AwsEnv) -> None:
    job_id = new_job_id()
    key = f"uploads/{job_id}.wav"
    aws.store.create_pending(job_id, object_key=key, content_type="audio/wav", bundle="gone")
    aws.put(key, CRY_WAV)
    aws.run_starter(aws.upload_event(key))
    (stage,) = aws.drain(FakeClassifier())
    job = aws.job(job_id)
    assert job.status is JobStatus.FAILED and job.failure_reason is ReasonCode.UNKNOWN_BUNDLE
    assert stage.status is JobStatus.FAILED


def test_a_starter_that_cannot_tell_starts_transcribe_and_the_audio_stage_does_not_wait(
    aws: AwsEnv, monkeypatch: pytest.MonkeyPatch, infant_bundle: Path
) -> None:
    """The deployed starter has no bundle in its environment: it starts Transcribe as for
    today's system; the classifier, which has the bundle, makes the audio verdict final
    and the late transcript changes nothing."""
    from alertfusion.engine import Engine

    monkeypatch.delenv("MODEL_BUNDLE", raising=False)
    monkeypatch.delenv("MODEL_BUNDLES", raising=False)
    reset_catalog()
    key = "uploads/incoming/cry-deployed.wav"
    aws.put(key, CRY_WAV)
    (out,) = aws.run_starter(aws.upload_event(key))["records"]
    assert out["transcribe"] == "started"
    job_id = out["job_id"]
    (stage,) = aws.drain(Engine.from_bundle(infant_bundle))
    assert stage.status is JobStatus.DONE and stage.transcribe is None
    job = aws.job(job_id)
    assert job.final is not None and job.final.recipe == "infant-cry"
    assert job.final.audio_only_detail == "the recipe has no text model"
    assert job.transcribe_status == "STARTED"
    late = aws.deliver_transcribe_event(
        aws.complete_transcription(job_id, "도와주세요"), FakeClassifier()
    )
    assert late.action == "already_recorded" and aws.job(job_id).final == job.final


def test_a_starter_told_by_the_stack_never_starts_transcribe(
    aws: AwsEnv, monkeypatch: pytest.MonkeyPatch, infant_bundle: Path
) -> None:
    """As deployed with a baked bundle without text model: BUNDLE_TEXT_MODEL=false."""
    from alertfusion.engine import Engine

    monkeypatch.delenv("MODEL_BUNDLE", raising=False)
    monkeypatch.delenv("MODEL_BUNDLES", raising=False)
    monkeypatch.setenv("BUNDLE_TEXT_MODEL", "false")
    reset_catalog()
    key = "uploads/incoming/cry-told.wav"
    aws.put(key, CRY_WAV)
    (out,) = aws.run_starter(aws.upload_event(key))["records"]
    assert out["transcribe"] == "skipped" and aws.transcribe_jobs() == []
    (stage,) = aws.drain(Engine.from_bundle(infant_bundle))
    assert stage.status is JobStatus.DONE
    assert aws.job(out["job_id"]).transcribe_status == "SKIPPED"


def test_a_starter_with_an_s3_bundle_reads_its_manifest_and_skips_transcribe(
    aws: AwsEnv, monkeypatch: pytest.MonkeyPatch, infant_bundle: Path
) -> None:
    """Deployed with an S3 bundle, the starter has only MODEL_BUNDLE=s3://... and read access
    to the manifest (infra.constructs.function_support.starter_environment): it reads the
    recipe there, and starts no Transcribe job for one without a text model."""
    from alertfusion.manifest import MANIFEST_FILE

    aws.s3.put_object(
        Bucket=BUCKET,
        Key=f"models/infant/{MANIFEST_FILE}",
        Body=(infant_bundle / MANIFEST_FILE).read_bytes(),
    )
    monkeypatch.setenv("MODEL_BUNDLE", f"s3://{BUCKET}/models/infant")
    monkeypatch.delenv("MODEL_BUNDLES", raising=False)
    reset_catalog()
    try:
        key = "uploads/incoming/s3-bundle.wav"
        aws.put(key, CRY_WAV)
        (out,) = aws.run_starter(aws.upload_event(key))["records"]
        assert (out["action"], out["transcribe"]) == ("accepted", "skipped")
        assert aws.transcribe_jobs() == []
        # an unreadable manifest: the starter cannot tell, and starts Transcribe as today
        monkeypatch.setenv("MODEL_BUNDLE", f"s3://{BUCKET}/models/missing")
        reset_catalog()
        other = "uploads/incoming/s3-bundle-missing.wav"
        aws.put(other, CRY_WAV)
        (out,) = aws.run_starter(aws.upload_event(other))["records"]
        assert (out["action"], out["transcribe"]) == ("accepted", "started")
        assert len(aws.transcribe_jobs()) == 1
    finally:
        reset_catalog()
