"""One upload at a time through the local stack: presigned POST over HTTP → moto's S3
notification → starter → Transcribe job in moto → stand-in transcript + event → classifier →
verdicts, checked against the engine run directly on the same audio and text."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from alertfusion.errors import ReasonCode
from alertfusion.jobs import JobStatus
from alertfusion.keys import derive_job_id, new_job_id, transcript_key
from alertfusion.result import ClassificationResult
from alertfusion.transcribe import parse_transcript
from devstack.config import LocalConfig
from devstack.stack import LocalStack
from devstack.transcribe import STANDIN_LABEL, StandInOutcome
from tests.e2e.conftest import TRANSCRIPTS, fixture_audio, sample

if TYPE_CHECKING:
    from alertfusion.engine import Engine

pytestmark = pytest.mark.e2e

PREFIX = LocalConfig().transcribe_job_prefix


def _engine(bundle: Path) -> Engine:
    from alertfusion.engine import Engine

    return Engine.from_bundle(bundle, gate="none")


def _result_file(stack: LocalStack, job_id: str) -> ClassificationResult:
    body = stack.client("s3").get_object(Bucket=stack.config.bucket, Key=f"results/{job_id}.json")
    return ClassificationResult.model_validate_json(body["Body"].read())


def test_upload_gets_an_audio_only_then_a_fused_verdict(
    make_stack: Callable[..., LocalStack], tiny_bundle: Path
) -> None:
    stack = make_stack(env={"FUSION_GATE": "none"})
    audio, text = sample("ko-help-16k.wav"), TRANSCRIPTS["ko-help-16k.wav"]
    job_id = new_job_id()
    stack.standin.plan(job_id, StandInOutcome.completed(text))
    stack.upload(f"uploads/{job_id}.wav", audio)

    job = stack.wait_until_final([job_id])[job_id]

    engine = _engine(tiny_bundle)
    alone = engine.classify(audio, filename=f"{job_id}.wav")
    fused = engine.classify(audio, text=text, filename=f"{job_id}.wav")
    assert job.status is JobStatus.DONE
    assert job.preliminary is not None and job.final is not None
    # the preliminary verdict is the audio alone; the final one fuses the stand-in's text
    assert job.preliminary.decided_by == "audio_only" and job.preliminary.text_source is None
    assert job.preliminary.probabilities == pytest.approx(alone.probabilities, abs=1e-5)
    assert job.final.decided_by == "fusion" and job.final.text_source == "transcribe"
    assert job.final.audio_only_reason is None
    assert job.final.probabilities == pytest.approx(fused.probabilities, abs=1e-5)
    assert job.final.label == fused.label
    assert job.preliminary.probabilities != pytest.approx(job.final.probabilities, abs=1e-6)
    result = _result_file(stack, job_id)
    assert result.text.status == "used" and result.label == fused.label

    # Transcribe: one job, named from the job id, COMPLETED in moto, its file where asked
    assert stack.transcribe_job_names() == [PREFIX + job_id]
    transcribe_job = stack.client("transcribe").get_transcription_job(
        TranscriptionJobName=PREFIX + job_id
    )["TranscriptionJob"]
    assert transcribe_job["TranscriptionJobStatus"] == "COMPLETED"
    assert transcribe_job["LanguageCode"] == "ko-KR"
    assert transcribe_job["Transcript"]["TranscriptFileUri"].endswith(transcript_key(job_id))
    document = (
        stack.client("s3")
        .get_object(Bucket=stack.config.bucket, Key=transcript_key(job_id))["Body"]
        .read()
    )
    assert parse_transcript(document) == text
    assert any(note.startswith(STANDIN_LABEL) for note in stack.notes)

    # one invocation per event, each through the real handler, none failed
    stack.wait_idle()
    made = [(i.function, i.trigger) for i in stack.invocations if i.function != "sweeper"]
    assert sorted(made) == [
        ("classifier", "transcribe-event"),
        ("classifier", "work-queue"),
        ("starter", "s3:ObjectCreated"),
    ]
    assert all(i.ok for i in stack.invocations), [i.error for i in stack.invocations]
    classifier_runs = [i for i in stack.invocations if i.function == "classifier"]
    assert all(i.inference_ms > 0 for i in classifier_runs)

    # alerts: exactly the stages whose verdict is an emergency, once each
    expected = {
        f"{job_id}:{stage}"
        for stage, verdict in (("preliminary", job.preliminary), ("final", job.final))
        if verdict.is_emergency
    }
    assert sorted(a["detail"]["alert_id"] for a in stack.alerts()) == sorted(expected)


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [
        (StandInOutcome.completed(""), ReasonCode.TRANSCRIPT_EMPTY),
        (StandInOutcome.failed("Unsupported media"), ReasonCode.TRANSCRIBE_FAILED),
    ],
    ids=["empty-transcript", "transcribe-failed"],
)
def test_no_usable_transcript_gives_an_audio_only_final_verdict_that_says_why(
    make_stack: Callable[..., LocalStack],
    tiny_bundle: Path,
    outcome: StandInOutcome,
    reason: ReasonCode,
) -> None:
    stack = make_stack(env={"FUSION_GATE": "none"})
    audio = sample("ko-regular-22k.wav")
    job_id = new_job_id()
    stack.standin.plan(job_id, outcome)
    stack.upload(f"uploads/{job_id}.wav", audio)

    job = stack.wait_until_final([job_id])[job_id]

    alone = _engine(tiny_bundle).classify(audio)
    assert job.status is JobStatus.DONE and job.final is not None
    assert job.final.audio_only_reason is reason
    assert job.final.text_source is None and job.final.decided_by == "audio_only"
    assert job.final.probabilities == pytest.approx(alone.probabilities, abs=1e-5)
    if reason is ReasonCode.TRANSCRIBE_FAILED:
        assert "Unsupported media" in (job.final.audio_only_detail or "")
        assert job.transcribe_status == "FAILED"


def test_object_dropped_by_hand_under_a_korean_name_is_classified(
    make_stack: Callable[..., LocalStack],
) -> None:
    stack = make_stack()
    key = "uploads/녹음 파일+1 (복사본).wav"
    audio = sample("ko-robbery-44k-stereo.wav")
    stack.upload(key, audio)
    etag = stack.client("s3").head_object(Bucket=stack.config.bucket, Key=key)["ETag"]
    job_id = derive_job_id(key, version_id=None, etag=etag, sequencer=None)

    job = stack.wait_until_final([job_id])[job_id]

    assert job.status is JobStatus.DONE and job.object_key == key
    # no text was planned: the stand-in recognised the shipped sample and used its transcript
    handled = stack.standin.handled[PREFIX + job_id]
    assert handled.outcome.text == TRANSCRIPTS["ko-robbery-44k-stereo.wav"]
    assert job.transcribe_status == "COMPLETED"


def test_a_file_too_short_for_transcribe_fails_without_a_transcribe_job(
    make_stack: Callable[..., LocalStack],
) -> None:
    stack = make_stack()
    job_id = new_job_id()
    stack.upload(f"uploads/{job_id}.wav", fixture_audio("short-0.3s.wav"))

    job = stack.wait_until_final([job_id])[job_id]

    assert job.status is JobStatus.FAILED and job.failure_reason is ReasonCode.TOO_SHORT
    assert stack.transcribe_job_names() == []


def test_the_stack_leaves_nothing_behind(tiny_bundle: Path) -> None:
    before = dict(os.environ)
    stack = LocalStack(LocalConfig(bundle=str(tiny_bundle)))
    with stack:
        port = int(stack.endpoint_url.rsplit(":", 1)[1])
        assert os.environ["AWS_ENDPOINT_URL"] == stack.endpoint_url
        assert os.environ["AUDIO_BUCKET"] == stack.config.bucket
    assert dict(os.environ) == before
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0, "moto still listens"


def test_an_exception_inside_the_stack_still_stops_it(tiny_bundle: Path) -> None:
    before = dict(os.environ)
    stack = LocalStack(LocalConfig(bundle=str(tiny_bundle)))
    with pytest.raises(KeyboardInterrupt), stack:
        raise KeyboardInterrupt  # Ctrl-C in the demo
    assert dict(os.environ) == before
    assert not any(t.name.startswith("local-") for t in threading.enumerate())
