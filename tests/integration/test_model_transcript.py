"""TRANSCRIPT_SOURCE=model (a recipe whose transcript comes from the bundle's own
speech-to-text model): the starter never starts Amazon Transcribe, the classifier transcribes
and fuses in one invocation, and the job gets one final verdict, no second stage."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from alertfusion.errors import ReasonCode
from alertfusion.jobs import JobStatus
from alertfusion.keys import new_job_id
from alertfusion.result import ClassificationResult, TranscriptInfo
from tests.conftest import SAMPLES
from tests.integration.conftest import AwsEnv, configure
from tests.pipeline_doubles import FakeClassifier, make_result

pytestmark = pytest.mark.integration

HELP_WAV = (SAMPLES / "ko-help-16k.wav").read_bytes()


@dataclass
class TranscribingClassifier(FakeClassifier):
    """Without text, it "hears" `heard` (as an engine with a speech-to-text model does) and
    fuses it; its result says the transcript came from the model."""

    heard: str = "도와주세요"

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
