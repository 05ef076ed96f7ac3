"""The local Transcribe stand-in: finishes moto's Transcribe jobs from given text."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from alertfusion.transcribe import EVENT_DETAIL_TYPE, EVENT_SOURCE
from devstack.moto_hooks import MOTO_ACCOUNT_ID, MotoTranscriptionJob

if TYPE_CHECKING:
    from devstack.stack import LocalStack

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
STANDIN_LABEL = "[local Transcribe stand-in]"

log = logging.getLogger("alertfusion.local")


@dataclass(frozen=True)
class StandInOutcome:
    """What the stand-in makes of one Transcribe job."""

    #: IN_PROGRESS: Transcribe never finishes the job (no file, no event)
    status: Literal["COMPLETED", "FAILED", "IN_PROGRESS"] = "COMPLETED"
    #: the transcript; "" writes Transcribe's output for a recording without words
    text: str = ""
    failure_reason: str = "The media file could not be transcribed (local stand-in)."
    #: False: the job finishes but its event is lost (only the sweeper can finish the job)
    emit_event: bool = True
    #: how many times EventBridge delivers the event (at least once)
    event_copies: int = 1

    @classmethod
    def completed(cls, text: str, **kwargs: Any) -> StandInOutcome:
        return cls(status="COMPLETED", text=text, **kwargs)

    @classmethod
    def never_finishes(cls) -> StandInOutcome:
        return cls(status="IN_PROGRESS", emit_event=False)

    @classmethod
    def failed(cls, reason: str | None = None, **kwargs: Any) -> StandInOutcome:
        if reason is not None:
            kwargs["failure_reason"] = reason
        return cls(status="FAILED", **kwargs)


def sample_transcripts() -> dict[str, str]:
    """sha256 of each shipped sample → its transcript (samples/transcripts.json)."""
    names: dict[str, str] = json.loads((SAMPLES / "transcripts.json").read_text("utf-8"))
    out: dict[str, str] = {}
    for name, text in names.items():
        path = SAMPLES / name
        if path.is_file():
            out[hashlib.sha256(path.read_bytes()).hexdigest()] = text
    return out


def transcript_document(job_name: str, text: str) -> dict[str, Any]:
    """Transcribe's output file (tests/fixtures/transcribe) for `text`."""
    return {
        "jobName": job_name,
        "accountId": MOTO_ACCOUNT_ID,
        "status": "COMPLETED",
        "results": {"transcripts": [{"transcript": text}], "items": [], "audio_segments": []},
    }


@dataclass(frozen=True)
class HandledJob:
    job_name: str
    media_uri: str
    outcome: StandInOutcome
    transcript_key: str | None
    finished_at: float


class TranscribeStandIn:
    """Does for moto's Transcribe jobs what Amazon Transcribe would do, from given text.

    moto's Transcribe accepts jobs but never writes a transcript, never emits an event and
    never fails a job. The stand-in does NOT recognise speech. For each new job it picks an
    outcome: the one planned for the job id or object key (:meth:`plan`), else the transcript
    of a shipped sample whose bytes equal the job's media (samples/transcripts.json), else an
    empty transcript (what Transcribe writes for a recording without words). Then, in
    Transcribe's order: the job IN_PROGRESS, the output file at the job's ``OutputKey`` in
    Transcribe's JSON shape (``results.transcripts`` carries the text; ``items`` and
    ``audio_segments`` stay empty, since nothing aligns words to audio here), the job
    COMPLETED (or FAILED with a reason), and the "Transcribe Job State Change" event on the
    default bus, unless the outcome says the event is lost.

    moto's own progression is pinned (``moto_hooks.pin_transcribe_progression``), so that, as
    with Transcribe, only the stand-in finishes jobs; it moves moto's job object itself
    (``moto_hooks.MotoTranscriptionJob``: moto has no API for it).
    """

    def __init__(self, stack: LocalStack) -> None:
        self._stack = stack
        self._plans: dict[str, StandInOutcome] = {}
        self._media_plans: dict[str, StandInOutcome] = {}
        self._lock = threading.Lock()
        self._samples = sample_transcripts()
        self.handled: dict[str, HandledJob] = {}
        self.errors: list[str] = []

    def plan(self, job_id_or_key: str, outcome: StandInOutcome) -> None:
        """Decide what happens to the Transcribe job of a job id or an upload's object key."""
        with self._lock:
            self._plans[job_id_or_key] = outcome

    def plan_media(self, media: bytes, outcome: StandInOutcome) -> None:
        """Decide what happens to any Transcribe job that reads these bytes (the soak: a
        transcript that says which object Transcribe read)."""
        with self._lock:
            self._media_plans[hashlib.sha256(media).hexdigest()] = outcome

    def _outcome_for(
        self, job_id: str | None, object_key: str, media: bytes | None
    ) -> tuple[StandInOutcome, str]:
        with self._lock:
            for key in (job_id, object_key):
                if key is not None and key in self._plans:
                    return self._plans[key], "planned"
            digest = hashlib.sha256(media).hexdigest() if media is not None else None
            if digest is not None and digest in self._media_plans:
                return self._media_plans[digest], "planned for the bytes read"
        if media is not None:
            text = self._samples.get(hashlib.sha256(media).hexdigest())
            if text is not None:
                return StandInOutcome.completed(text), "the sample's transcript"
        return StandInOutcome.completed(""), "no text supplied: empty transcript"

    def poll_once(self, names: Iterable[str] | None = None) -> int:
        """Handle the jobs named (default: every job moto holds) that the stand-in has not
        handled; returns how many."""
        done = 0
        for name in self._stack.transcribe_job_names() if names is None else names:
            if name in self.handled:
                continue
            try:
                self._handle(name)
            except Exception as exc:  # keep watching the other jobs; report it
                self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
                log.exception("%s failed on %s", STANDIN_LABEL, name)
                self.handled[name] = HandledJob(name, "", StandInOutcome(), None, time.time())
            done += 1
        return done

    def _handle(self, name: str) -> None:
        from alertfusion.keys import job_id_from_transcribe_job_name

        stack, region = self._stack, self._stack.config.region
        transcribe, s3 = stack.client("transcribe"), stack.client("s3")
        job = transcribe.get_transcription_job(TranscriptionJobName=name)["TranscriptionJob"]
        moto_job = MotoTranscriptionJob(region, name)
        moto_job.move_to("IN_PROGRESS")
        media_uri = job["Media"]["MediaFileUri"]
        bucket, _, object_key = media_uri.removeprefix("s3://").partition("/")
        try:
            media: bytes | None = s3.get_object(Bucket=bucket, Key=object_key)["Body"].read()
        except Exception:
            media = None
        job_id = job_id_from_transcribe_job_name(name, stack.config.transcribe_job_prefix)
        outcome, why = self._outcome_for(job_id, object_key, media)
        out_key: str | None = None
        if outcome.status == "IN_PROGRESS":
            stack.note(f"{STANDIN_LABEL} {name}: stays IN_PROGRESS ({why})")
            self.handled[name] = HandledJob(name, media_uri, outcome, None, time.time())
            return
        if outcome.status == "COMPLETED":
            output_bucket, output_key = moto_job.output
            out_bucket = output_bucket or bucket
            out_key = output_key or f"{name}.json"
            document = transcript_document(name, outcome.text)
            s3.put_object(
                Bucket=out_bucket,
                Key=out_key,
                Body=json.dumps(document, ensure_ascii=False).encode("utf-8"),
                ContentType="application/json",
            )
            uri = f"https://s3.{region}.amazonaws.com/{out_bucket}/{out_key}"
            moto_job.move_to("COMPLETED", transcript_uri=uri)
        else:
            moto_job.move_to("FAILED", failure_reason=outcome.failure_reason)
        self.handled[name] = HandledJob(name, media_uri, outcome, out_key, time.time())
        stack.note(
            f"{STANDIN_LABEL} {name}: {outcome.status} ({why})"
            + ("" if outcome.emit_event else "; its completion event is lost, as planned")
        )
        if outcome.emit_event:
            for _ in range(max(1, outcome.event_copies)):
                self.put_event(name, outcome.status)

    def put_event(self, job_name: str, status: str) -> None:
        """The "Transcribe Job State Change" event on the default bus."""
        response = self._stack.client("events").put_events(
            Entries=[
                {
                    "Source": EVENT_SOURCE,
                    "DetailType": EVENT_DETAIL_TYPE,
                    "Detail": json.dumps(
                        {"TranscriptionJobName": job_name, "TranscriptionJobStatus": status}
                    ),
                    "Resources": [],
                }
            ]
        )
        if response.get("FailedEntryCount"):
            raise RuntimeError(f"PutEvents refused the Transcribe event: {response}")
