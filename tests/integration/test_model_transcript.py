"""A recipe whose transcript comes from the bundle's own speech-to-text model (TRANSCRIPT_SOURCE=
model, set at synth from a baked bundle; or the recipe in the manifest of a bundle the
functions read at run time): the starter never starts Amazon Transcribe, the classifier
transcribes and fuses in one invocation, and the job gets one final verdict, no second
stage."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from alertfusion.catalog import reset_catalog
from alertfusion.engine import reset_engine
from alertfusion.errors import ReasonCode
from alertfusion.jobs import JobStatus
from alertfusion.keys import new_job_id
from alertfusion.result import ClassificationResult, TranscriptInfo
from alertfusion.settings import engine_settings
from tests.conftest import SAMPLES
from tests.integration.conftest import BUCKET, AwsEnv, configure
from tests.pipeline_doubles import FakeClassifier, make_result

pytestmark = pytest.mark.integration

HELP_WAV = (SAMPLES / "ko-help-16k.wav").read_bytes()


@dataclass
class TranscribingClassifier(FakeClassifier):
    """Without text, it "hears" `heard` (as an engine with a speech-to-text model does) and
    fuses it; its result says the transcript came from the model."""

    heard: str = "도와주세요"
    transcribes: bool = True

    def classify(self, audio: bytes, **kwargs: object) -> ClassificationResult:
        if kwargs.get("text") is not None:
            raise AssertionError("the pipeline passes no text with TRANSCRIPT_SOURCE=model")
        base = super().classify(audio, **kwargs)  # type: ignore[arg-type]
        info = TranscriptInfo(source="model", text=self.heard, model="stt", n_tokens=5, ms=1.0)
        if not self.heard:
            return base.model_copy(update={"transcript": info})
        fused = make_result("help", text=self.heard)
        return fused.model_copy(update={"transcript": info})


def _upload(aws: AwsEnv) -> tuple[str, dict[str, str]]:
    job_id = new_job_id()
    key = f"uploads/{job_id}.wav"
    aws.put(key, HELP_WAV)
    (out,) = aws.run_starter(aws.upload_event(key))["records"]
    return job_id, out


def test_the_model_transcribes_and_no_transcribe_job_is_started(
    aws: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, TRANSCRIPT_SOURCE="model")
    job_id, out = _upload(aws)
    assert (out["action"], out["transcribe"]) == ("accepted", "skipped")

    fake = TranscribingClassifier(audio_label="regular")
    (stage,) = aws.drain(fake)

    assert (stage.status, stage.transcribe, stage.label) == (JobStatus.DONE, "skipped", "help")
    assert len(fake.calls) == 1 and fake.calls[0].text is None  # one invocation
    job = aws.job(job_id)
    assert job.preliminary is None, "one final verdict, no preliminary and no second stage"
    assert job.final is not None and job.final.text_source == "model"
    assert job.final.audio_only_reason is None
    assert job.transcribe_status == "SKIPPED"
    assert aws.transcribe_jobs() == []
    assert aws.alert_ids() == [f"{job_id}:final"]


def test_the_model_hearing_nothing_gives_an_audio_only_final_verdict(
    aws: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, TRANSCRIPT_SOURCE="model")
    job_id, _ = _upload(aws)
    aws.drain(TranscribingClassifier(audio_label="regular", heard=""))
    job = aws.job(job_id)
    assert job.status is JobStatus.DONE and job.final is not None
    assert job.final.audio_only_reason is ReasonCode.TRANSCRIPT_EMPTY
    assert job.final.text_source is None
    assert aws.transcribe_jobs() == []


def test_a_bundle_that_does_not_transcribe_is_said_so(
    aws: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, TRANSCRIPT_SOURCE="model")
    job_id, _ = _upload(aws)
    aws.drain(FakeClassifier(audio_label="help"))
    job = aws.job(job_id)
    assert job.status is JobStatus.DONE and job.final is not None
    assert job.final.audio_only_reason is ReasonCode.TRANSCRIBE_SKIPPED
    assert "no speech-to-text model" in (job.final.audio_only_detail or "")
    assert aws.transcribe_jobs() == []


def test_an_s3_bundle_whose_recipe_transcribes_needs_no_deployment_setting(
    aws: AwsEnv, monkeypatch: pytest.MonkeyPatch, offline_bundle: Path
) -> None:
    """An S3 bundle is not read at synth (TRANSCRIPT_SOURCE stays aws_transcribe) and may
    change without a deploy: the starter reads its recipe in the manifest and starts no
    Transcribe job; the audio stage, whose classifier transcribes, gives the one verdict."""
    from alertfusion.manifest import MANIFEST_FILE

    aws.s3.put_object(
        Bucket=BUCKET,
        Key=f"models/offline/{MANIFEST_FILE}",
        Body=(offline_bundle / MANIFEST_FILE).read_bytes(),
    )
    monkeypatch.setenv("MODEL_BUNDLE", f"s3://{BUCKET}/models/offline")
    monkeypatch.delenv("MODEL_BUNDLES", raising=False)
    monkeypatch.delenv("TRANSCRIPT_SOURCE", raising=False)
    configure(monkeypatch)
    reset_catalog()
    try:
        job_id, out = _upload(aws)
        assert (out["action"], out["transcribe"]) == ("accepted", "skipped")
        fake = TranscribingClassifier(audio_label="regular")
        (stage,) = aws.drain(fake)
        assert (stage.status, stage.label) == (JobStatus.DONE, "help")
        assert len(fake.calls) == 1 and fake.calls[0].text is None
        job = aws.job(job_id)
        assert job.preliminary is None and job.final is not None
        assert job.final.text_source == "model"
        assert aws.transcribe_jobs() == []
    finally:
        reset_catalog()


def test_the_deployment_setting_speaks_for_the_default_bundle_only(
    aws: AwsEnv, monkeypatch: pytest.MonkeyPatch, tiny_bundle: Path
) -> None:
    """As deployed with a baked default bundle that transcribes itself (TRANSCRIPT_SOURCE=
    model; the starter has no copy of it) beside a named S3 bundle of today's system
    (MODEL_BUNDLES): a job of the named bundle still gets its Transcribe job and its audio
    stage waits for the transcript; a dropped file (the default bundle) gets neither."""
    for file in sorted(tiny_bundle.iterdir()):
        aws.s3.put_object(Bucket=BUCKET, Key=f"models/today/{file.name}", Body=file.read_bytes())
    monkeypatch.delenv("MODEL_BUNDLE", raising=False)
    monkeypatch.setenv("MODEL_BUNDLES", f"today=s3://{BUCKET}/models/today")
    monkeypatch.setenv("SELFCHECK", "false")
    configure(monkeypatch, TRANSCRIPT_SOURCE="model")
    engine_settings.cache_clear()
    reset_catalog()
    reset_engine()
    try:
        named = new_job_id()
        key = f"uploads/{named}.wav"
        aws.store.create_pending(named, object_key=key, content_type="audio/wav", bundle="today")
        aws.put(key, HELP_WAV)
        (out,) = aws.run_starter(aws.upload_event(key))["records"]
        assert (out["action"], out["transcribe"]) == ("accepted", "started")
        dropped, out = _upload(aws)
        assert (out["action"], out["transcribe"]) == ("accepted", "skipped")
        (started,) = aws.transcribe_jobs()
        assert started.endswith(named) and dropped not in started
        # the classifier has the baked default bundle (the image sets MODEL_BUNDLE); this
        # double stands in for its engine
        monkeypatch.setenv("MODEL_BUNDLE", str(tiny_bundle))
        engine_settings.cache_clear()
        reset_catalog()
        default = TranscribingClassifier(audio_label="regular")
        outcomes = {o.job_id: o for o in aws.drain(default)}
        assert len(default.calls) == 1  # the dropped file; the named job has its own engine
        assert outcomes[dropped].status is JobStatus.DONE
        assert outcomes[named].status is not JobStatus.DONE
        job = aws.job(named)
        assert job.preliminary is not None and job.final is None  # waits for the transcript
    finally:
        engine_settings.cache_clear()
        reset_catalog()
        reset_engine()


def test_without_a_transcribing_bundle_the_audio_stage_waits_for_transcribe(
    aws: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same classifier double, told its bundle does not transcribe: today's two stages
    (the audio stage's verdict is preliminary, Transcribe makes the text)."""
    monkeypatch.delenv("TRANSCRIPT_SOURCE", raising=False)
    configure(monkeypatch)
    job_id, out = _upload(aws)
    assert out["transcribe"] == "started"
    aws.drain(TranscribingClassifier(audio_label="regular", transcribes=False))
    job = aws.job(job_id)
    assert job.preliminary is not None and job.final is None
    assert len(aws.transcribe_jobs()) == 1
