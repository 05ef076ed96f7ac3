"""`python -m devstack.soak`: N uploads through the local stack with faults injected at
random, then the counts that must be zero.

    python -m devstack.soak --uploads N [--faults random|none] [--seed S] [--bundle DIR]
        [--json FILE] [--log FILE] [--in-flight K] [--settle-seconds S]

Each upload goes as the app sends it: ``POST /uploads`` (with an Idempotency-Key, retried
on 5xx) and the presigned POST to S3; the local stack's real handlers, pumps, sweeper and
Transcribe stand-in do the rest (devstack.stack). The recordings are noise of distinct
lengths (and a few refused ones: a PNG, 0.3 s, NaN samples); the stand-in's transcript of
each recording names its bytes, so the soak can tell which object Transcribe read.

Faults (``--faults random``, seeded; the schedule of the threads is not): S3 events
delivered twice or three times; the work queue paused so that Transcribe's events overtake
the audio stage; Transcribe throttling; Transcribe events lost (the sweeper finishes those
jobs), sent twice, or jobs FAILED; DynamoDB throttling; handlers crashing (an exception at
one of devstack.child.KILL_POINTS); handler processes killed with SIGKILL at one of them
(devstack.child); objects replaced under their job's key (a presigned POST used twice:
right after the first upload, or later); Idempotency-Key replays.

Then, once every queue is idle, it prints: accepted uploads, DONE, FAILED by reason, and
the counts that must be zero: lost (an accepted upload whose job is not DONE or FAILED),
duplicate Transcribe jobs (more than one per job, or one for an upload the pipeline
refused), duplicate alerts (an alert id delivered twice), lost alerts (an emergency verdict
without its alert), and verdicts whose bytes differ from the object they name (a verdict
whose ETag is not its job's, a classification of other bytes than the job's, a length that
is not the named recording's, or a fused transcript of other bytes). Exit status: 0 when
all of these are 0, 1 otherwise, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BUNDLE = REPO / "build" / "models" / "demo"
LOG_FILE = REPO / "build" / "local" / "soak.log"
RATE = 16_000
#: recording lengths: 0.8 s + k x 20 ms (distinct within 250 uploads)
BASE_SECONDS, STEP_SECONDS, DISTINCT = 0.8, 0.02, 250
#: reasons a refused upload ends with (never a Transcribe job for those)
REFUSED = {"UNSUPPORTED_FORMAT", "TOO_SHORT", "EMPTY_AUDIO", "FILE_TOO_LARGE", "NOT_FINITE"}


@dataclass(frozen=True)
class Rates:
    """Probabilities of each fault (``--faults random``)."""

    duplicate_s3_event: float = 0.06
    pause_work: float = 0.03
    throttle_transcribe: float = 0.03
    lost_transcribe_event: float = 0.05
    duplicate_transcribe_event: float = 0.05
    failed_transcribe: float = 0.02
    dynamodb_throttle: float = 0.004
    crash: float = 0.01
    kill: float = 0.006
    replaced_at_once: float = 0.02
    replaced_later: float = 0.02
    replay: float = 0.03
    client_transcript: float = 0.04
    refused: float = 0.05

    @classmethod
    def none(cls) -> Rates:
        return cls(**dict.fromkeys(cls.__dataclass_fields__, 0.0))


@dataclass
class Recording:
    data: bytes
    md5: str
    duration_s: float | None
    kind: str


@dataclass
class Upload:
    index: int
    job_id: str
    key: str
    fields: dict[str, str]
    url: str
    #: the POST /uploads body (a replay sends the same)
    body: dict[str, str]
    objects: list[Recording] = field(default_factory=list)


class InjectedCrash(RuntimeError):
    """A handler crashing mid-way (injected by the soak)."""


class Chaos:
    """Seeded coin flips shared by the threads, and the in-process fault wrappers."""

    def __init__(self, seed: int, rates: Rates) -> None:
        self.rates = rates
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.enabled = True
        self.counts: Counter[str] = Counter()
        self._undo: list[tuple[Any, str, Any]] = []

    def flip(self, p: float, what: str = "") -> bool:
        if p <= 0 or not self.enabled:
            return False
        with self._lock:
            hit = self._rng.random() < p
        if hit and what:
            self.count(what)
        return hit

    def choice(self, options: list[Any]) -> Any:
        with self._lock:
            return self._rng.choice(options)

    def uniform(self, low: float, high: float) -> float:
        with self._lock:
            return self._rng.uniform(low, high)

    def count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    def patch(self, owner: Any, name: str, replacement: Any) -> None:
        self._undo.append((owner, name, getattr(owner, name)))
        setattr(owner, name, replacement)

    def undo(self) -> None:
        while self._undo:
            owner, name, original = self._undo.pop()
            setattr(owner, name, original)

    def install_crashes(self) -> None:
        """Handlers crash (InjectedCrash) before or after the calls where the soak also
        kills them: a crash is the same interruption without the process dying."""
        from devstack.child import KILL_POINTS, _resolve

        for points in KILL_POINTS.values():
            for point in points:
                owner, name = _resolve(point["target"])
                self.patch(owner, name, self._crashing(getattr(owner, name), point))

    def _crashing(self, original: Any, point: dict[str, str]) -> Any:
        chaos = self

        def crashing(*args: Any, **kwargs: Any) -> Any:
            if point["when"] == "before" and chaos.flip(chaos.rates.crash, "crashes"):
                raise InjectedCrash(f"crash before {point['target']} (injected)")
            result = original(*args, **kwargs)
            if point["when"] == "after" and chaos.flip(chaos.rates.crash, "crashes"):
                raise InjectedCrash(f"crash after {point['target']} (injected)")
            return result

        return crashing

    def install_dynamodb_throttling(self) -> None:
        """The job store's DynamoDB calls answer throttling now and then (a TransientError
        for the caller's retry, as alertfusion.dynamodb maps it)."""
        import alertfusion.jobs.store as store
        from alertfusion.errors import TransientError

        original = store.call_dynamodb
        chaos = self

        def throttled(client: Any, table: str, operation: str, **kwargs: Any) -> Any:
            if chaos.flip(chaos.rates.dynamodb_throttle, "dynamodb_throttled"):
                raise TransientError(f"DynamoDB {operation}: ThrottlingException (injected)")
            return original(client, table, operation, **kwargs)

        self.patch(store, "call_dynamodb", throttled)


def recording(index: int, kind: str, seed: int) -> Recording:
    """Noise of a length unique among `DISTINCT` uploads, or a refused file."""
    import numpy as np
    import soundfile

    rng = np.random.default_rng([seed, index])
    if kind == "png":
        data = b"\x89PNG\r\n\x1a\n" + rng.bytes(400)
        return Recording(data, hashlib.md5(data).hexdigest(), None, kind)
    if kind == "short":
        seconds: float = 0.3
    else:
        seconds = BASE_SECONDS + (index % DISTINCT) * STEP_SECONDS
    samples = (rng.standard_normal(round(seconds * RATE)) * 0.1).astype(np.float32)
    buffer = io.BytesIO()
    if kind == "nan":
        samples[len(samples) // 2] = np.nan
        soundfile.write(buffer, samples, RATE, format="WAV", subtype="FLOAT")
    else:
        soundfile.write(buffer, samples, RATE, format="WAV", subtype="PCM_16")
    data = buffer.getvalue()
    return Recording(data, hashlib.md5(data).hexdigest(), len(samples) / RATE, kind)


def transcript_of(rec: Recording) -> str:
    """The stand-in's transcript of these bytes: it names them."""
    return f"도와주세요 녹음 {rec.md5}"


@dataclass
class Report:
    accepted: int = 0
    done: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    duplicate_transcribe: list[str] = field(default_factory=list)
    duplicate_alerts: list[str] = field(default_factory=list)
    lost_alerts: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def must_be_zero(self) -> dict[str, int]:
        return {
            "lost": len(self.lost),
            "duplicate Transcribe jobs": len(self.duplicate_transcribe),
            "duplicate alerts": len(self.duplicate_alerts),
            "lost alerts": len(self.lost_alerts),
            "verdicts whose bytes differ from the object they name": len(self.mismatched),
        }

    @property
    def ok(self) -> bool:
        return not any(self.must_be_zero.values())

    def print(self, out: TextIO) -> None:
        out.write(f"accepted: {self.accepted}\n")
        out.write(f"DONE: {self.done}\n")
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.failed.items())) or "none"
        out.write(f"FAILED: {sum(self.failed.values())} ({reasons})\n")
        for name, value in self.must_be_zero.items():
            out.write(f"{name}: {value}{'' if not value else '  <-- must be 0'}\n")
        shown = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "none"
        out.write(f"faults injected: {shown}\n")
        out.write(f"took {self.seconds:.0f} s\n")
        for name, items in (
            ("lost", self.lost),
            ("duplicate Transcribe jobs", self.duplicate_transcribe),
            ("duplicate alerts", self.duplicate_alerts),
            ("lost alerts", self.lost_alerts),
            ("mismatched verdicts", self.mismatched),
        ):
            for item in items[:20]:
                out.write(f"  {name}: {item}\n")

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "done": self.done,
            "failed": dict(self.failed),
            **{k.replace(" ", "_"): v for k, v in self.must_be_zero.items()},
            "faults": dict(self.faults),
            "seconds": round(self.seconds, 1),
        }


class Soak:
    """The run: the stack, the API client, the uploads and what was classified."""

    def __init__(self, args: argparse.Namespace, out: TextIO) -> None:
        self.args = args
        self.out = out
        self.rates = Rates() if args.faults == "random" else Rates.none()
        self.chaos = Chaos(args.seed, self.rates)
        self.uploads: list[Upload] = []
        #: what the classifier was given: file name (the job's key) -> md5 of the bytes
        self.classified: dict[str, set[str]] = {}
        self._classified_lock = threading.Lock()

    @property
    def settle_seconds(self) -> float:
        """How long to wait for every job to be final (then the rest count as lost)."""
        chosen: float | None = self.args.settle_seconds
        return chosen if chosen is not None else max(300.0, 2.0 * self.args.uploads)

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> Report:
        from fastapi.testclient import TestClient

        from devstack.config import LocalConfig
        from devstack.stack import LocalStack
        from functions.api.app import create_app
        from functions.api.settings import ApiSettings

        config = LocalConfig(
            bundle=str(self.args.bundle),
            # lost Transcribe events are finished this soon; a job merely waiting its turn
            # longer than this is re-driven by every sweep (a duplicate task, harmless)
            stuck_after_seconds=5,
            hard_timeout_seconds=3600,
            sweep_interval_s=1.0,
            visibility_timeout_s=1,
            max_receive_count=50,
            env={"FUSION_GATE": self.args.gate},
        )
        started = time.monotonic()
        # the SIGKILLed handler processes' specs and answers (devstack.child)
        workdir = Path(tempfile.mkdtemp(prefix="alertfusion-soak-"))
        try:
            with LocalStack(config) as stack:
                stack.warm()
                self._record_classifications()
                if self.args.faults == "random":
                    self.chaos.install_crashes()
                    self.chaos.install_dynamodb_throttling()
                    stack.intercept_invocations(self._killer(stack, workdir))
                api = TestClient(create_app(ApiSettings.model_validate({})))
                try:
                    self._drive(stack, api)
                    self._settle(stack)
                finally:
                    self.chaos.enabled = False
                    self.chaos.undo()
                    stack.intercept_invocations(None)
                    api.close()
                self._settle(stack)
                report = self._count(stack)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        report.faults = self.chaos.counts
        report.seconds = time.monotonic() - started
        return report

    def _record_classifications(self) -> None:
        """Wrap the classifier the handlers get: every recording it is given is noted under
        its file name (the job's key), so the bytes of each verdict can be checked."""
        from functions.classifier import app as classifier_app

        original = classifier_app.get_classifier
        soak = self

        class Recorder:
            def __init__(self, engine: Any) -> None:
                self._engine = engine

            def __getattr__(self, name: str) -> Any:
                return getattr(self._engine, name)

            def classify(self, audio: bytes, **kwargs: Any) -> Any:
                with soak._classified_lock:
                    name = str(kwargs.get("filename"))
                    soak.classified.setdefault(name, set()).add(hashlib.md5(audio).hexdigest())
                return self._engine.classify(audio, **kwargs)

        wrapped = Recorder(original())
        # the stack puts its own back when it stops (devstack.handlers.Handlers.uninstall)
        classifier_app.get_classifier = lambda: wrapped

    def _killer(self, stack: Any, workdir: Path) -> Any:
        """The handlers' interceptor: now and then an invocation runs in a child process
        that is killed with SIGKILL at one of its KILL_POINTS (devstack.child)."""
        from devstack.child import KILL_POINTS, ChildInvocation
        from devstack.handlers import Invocation

        env = {**stack.env, "FUSION_GATE": self.args.gate, "POWERTOOLS_TRACE_DISABLED": "true"}
        children = ChildInvocation(workdir, env)

        def intercept(
            function: str, trigger: str, event: dict[str, Any], job_ids: tuple[str, ...]
        ) -> Invocation | None:
            if function not in KILL_POINTS or not self.chaos.flip(self.rates.kill):
                return None
            pause = self.chaos.choice(KILL_POINTS[function])
            began = time.time()
            outcome = children.run(function, event, pause=pause)
            self.chaos.count("processes_killed" if outcome.killed else "kills_missed")
            ok = bool(outcome.answer and outcome.answer.get("ok")) and not outcome.killed
            return Invocation(
                function,
                trigger,
                began,
                (time.time() - began) * 1000,
                0.0,
                ok,
                None if ok else f"killed with SIGKILL at {pause['target']}",
                (outcome.answer or {}).get("response"),
                job_ids,
                None if ok else "Killed",
            )

        return intercept

    def _drive(self, stack: Any, api: Any) -> None:
        later: list[Upload] = []
        in_flight: set[str] = set()
        for index in range(self.args.uploads):
            in_flight = self._room(stack, in_flight)
            kind = "audio"
            if self.chaos.flip(self.rates.refused):
                kind = self.chaos.choice(["png", "short", "nan"])
            upload = self._upload(stack, api, index, kind)
            if upload is None:
                continue
            in_flight.add(upload.job_id)
            if self.chaos.flip(self.rates.duplicate_s3_event, "duplicate_s3_events"):
                for _ in range(self.chaos.choice([1, 2])):
                    stack.replay_upload_event(upload.key)
            if self.chaos.flip(self.rates.replaced_at_once, "replaced_at_once"):
                self._replace(stack, upload, 10_000 + index)
            elif self.chaos.flip(self.rates.replaced_later, "replaced_later"):
                later.append(upload)
            if self.chaos.flip(self.rates.replay, "idempotency_replays"):
                replay = self._post_uploads(api, upload.index, upload.body)
                if replay.status_code != 200 or replay.json()["job_id"] != upload.job_id:
                    raise RuntimeError(f"an Idempotency-Key replay answered {replay.text}")
            if self.chaos.flip(self.rates.throttle_transcribe, "transcribe_throttled"):
                stack.throttle_transcribe(self.chaos.choice([1, 2, 4]))
            if self.chaos.flip(self.rates.pause_work, "work_paused"):
                stack.pause("work")
                time.sleep(self.chaos.uniform(0.3, 1.5))
                stack.resume("work")
            if later and index % 25 == 24:
                for old in later:
                    self._replace(stack, old, 20_000 + old.index)
                later.clear()
            if index % 100 == 99:
                self.out.write(f"soak: {index + 1} uploads sent\n")
                self.out.flush()
        for old in later:
            self._replace(stack, old, 20_000 + old.index)

    def _room(self, stack: Any, in_flight: set[str]) -> set[str]:
        """Wait until fewer than ``--in-flight`` jobs are unfinished; the ones still are.

        The local stack runs one handler at a time: uploads sent faster than it finishes
        them only queue up, and a job queued past STUCK_AFTER_SECONDS is re-driven by every
        sweep, which queues more work than the stack can do. Jobs that stay unfinished for
        the settle time are left to the final count (lost)."""
        deadline = time.monotonic() + self.settle_seconds
        while len(in_flight) >= self.args.in_flight:
            began = time.monotonic()
            in_flight = self._unfinished(stack, in_flight)
            if len(in_flight) < self.args.in_flight:
                break
            if began > deadline:
                self.out.write(f"soak: {len(in_flight)} jobs unfinished; sending on\n")
                return set()
            time.sleep(max(0.2, 2 * (time.monotonic() - began)))
        return in_flight

    def _post_uploads(self, api: Any, index: int, body: dict[str, str] | None = None) -> Any:
        payload = body or {"content_type": "audio/wav"}
        headers = {"Idempotency-Key": f"soak-{self.args.seed}-{index}"}
        for _ in range(20):
            answer = api.post("/uploads", json=payload, headers=headers)
            if answer.status_code < 500:
                return answer
            time.sleep(0.05)  # a throttled table: the app retries with the same key
        raise RuntimeError(f"POST /uploads kept failing: {answer.text}")

    def _upload(self, stack: Any, api: Any, index: int, kind: str) -> Upload | None:
        from devstack.transcribe import StandInOutcome

        rec = recording(index, kind, self.args.seed)
        body = {"content_type": "audio/wav"}
        if kind == "audio" and self.chaos.flip(self.rates.client_transcript, "client_transcripts"):
            body["transcript"] = transcript_of(rec)
        answer = self._post_uploads(api, index, body)
        if answer.status_code not in (200, 201):
            raise RuntimeError(f"POST /uploads answered {answer.status_code}: {answer.text}")
        created = answer.json()
        post = created["upload"]
        upload = Upload(index, created["job_id"], post["key"], post["fields"], post["url"], body)
        self._plan_transcript(stack, rec, StandInOutcome)
        self._post_object(upload, rec)
        self.uploads.append(upload)
        return upload

    def _plan_transcript(self, stack: Any, rec: Recording, outcome: Any) -> None:
        text = transcript_of(rec)
        if self.chaos.flip(self.rates.failed_transcribe, "transcribe_failed"):
            plan = outcome.failed("injected by the soak")
        elif self.chaos.flip(self.rates.lost_transcribe_event, "transcribe_events_lost"):
            plan = outcome.completed(text, emit_event=False)
        elif self.chaos.flip(self.rates.duplicate_transcribe_event, "transcribe_events_doubled"):
            plan = outcome.completed(text, event_copies=self.chaos.choice([2, 3]))
        else:
            plan = outcome.completed(text)
        stack.standin.plan_media(rec.data, plan)

    def _post_object(self, upload: Upload, rec: Recording) -> None:
        import httpx

        for _ in range(10):
            sent = httpx.post(
                upload.url,
                data=upload.fields,
                files={"file": ("recording.wav", rec.data, "audio/wav")},
                timeout=30,
            )
            if sent.status_code in (200, 201, 204):
                upload.objects.append(rec)
                return
            time.sleep(0.05)
        raise RuntimeError(f"the presigned POST failed: {sent.status_code} {sent.text[:200]}")

    def _replace(self, stack: Any, upload: Upload, index: int) -> None:
        """The same presigned POST used again with other bytes."""
        from devstack.transcribe import StandInOutcome

        rec = recording(index, "audio", self.args.seed)
        self._plan_transcript(stack, rec, StandInOutcome)
        self._post_object(upload, rec)

    def _settle(self, stack: Any) -> None:
        """Wait until every upload's job is final and the stack is idle."""
        deadline = time.monotonic() + self.settle_seconds
        pending = {upload.job_id for upload in self.uploads}
        while pending and time.monotonic() < deadline:
            began = time.monotonic()
            pending = self._unfinished(stack, pending)
            if pending:
                # every read holds the local DynamoDB a while: leave it to the pipeline
                time.sleep(max(0.5, 4 * (time.monotonic() - began)))
        self._quiet(stack, max(min(60.0, self.settle_seconds), deadline - time.monotonic()))

    def _quiet(self, stack: Any, timeout: float) -> None:
        """Wait until the queues stay empty for 2 s: with every job final, what may remain
        are duplicate events and re-driven tasks. (The stack's wait_idle wants 0.5 s without
        any invocation, which the sweeper never leaves once a sweep of a large table takes
        about as long as its interval.)"""
        deadline = time.monotonic() + timeout
        calm = 0
        while calm < 4:
            if time.monotonic() > deadline:
                self.out.write("soak: the queues did not stay empty before the deadline\n")
                return
            queues = ("upload-events", "transcribe-events", "work")
            calm = 0 if any(stack.queue_depth(q) for q in queues) else calm + 1
            time.sleep(0.5)

    @staticmethod
    def _unfinished(stack: Any, job_ids: set[str]) -> set[str]:
        """The jobs among `job_ids` that are not DONE or FAILED, read by key 100 at a time (a
        scan of the whole table at every check would starve the pipeline of moto's
        DynamoDB, which serves one request at a time)."""
        ddb, table = stack.client("dynamodb"), stack.config.table
        final: set[str] = set()
        ordered = sorted(job_ids)
        for start in range(0, len(ordered), 100):
            request: dict[str, Any] | None = {
                table: {
                    "Keys": [{"job_id": {"S": job_id}} for job_id in ordered[start : start + 100]],
                    "ProjectionExpression": "job_id, #status",
                    "ExpressionAttributeNames": {"#status": "status"},
                }
            }
            while request:
                page = ddb.batch_get_item(RequestItems=request)
                for item in page["Responses"].get(table, []):
                    if item.get("status", {}).get("S") in ("DONE", "FAILED"):
                        final.add(item["job_id"]["S"])
                request = page.get("UnprocessedKeys") or None
        return job_ids - final

    @staticmethod
    def _jobs(stack: Any) -> dict[str, Any]:
        """Every job, read with the stack's own client (never through the faults)."""
        from alertfusion.dynamodb import from_attribute
        from alertfusion.jobs import Job

        jobs = {}
        for item in stack.all_jobs():
            job = Job.model_validate({k: from_attribute(v) for k, v in item.items()})
            jobs[job.job_id] = job
        return jobs

    # -- the counts -----------------------------------------------------------------------

    def _count(self, stack: Any) -> Report:
        report = Report(accepted=len(self.uploads))
        jobs = self._jobs(stack)
        for upload in self.uploads:
            job = jobs.get(upload.job_id)
            if job is None or not _final(job):
                status = job.status.value if job else "missing"
                report.lost.append(f"{upload.job_id} ({status})")
                continue
            if job.status.value == "DONE":
                report.done += 1
            else:
                report.failed[job.failure_reason.value if job.failure_reason else "?"] += 1
            report.mismatched += self._mismatches(stack, upload, job)
        self._count_transcribe(stack, jobs, report)
        self._count_alerts(stack, jobs, report)
        return report

    def _mismatches(self, stack: Any, upload: Upload, job: Any) -> list[str]:
        """What about this job's verdicts does not describe the object it names."""
        problems: list[str] = []
        named = [rec for rec in upload.objects if rec.md5 == job.etag]
        if job.etag is None:
            return (
                problems
                if job.preliminary is None and job.final is None
                else [f"{job.job_id}: verdicts but no ETag"]
            )
        if not named:
            return [f"{job.job_id}: names ETag {job.etag}, which no upload to its key had"]
        rec = named[0]
        for stage, verdict in (("preliminary", job.preliminary), ("final", job.final)):
            if verdict is None:
                continue
            if verdict.object_etag != job.etag:
                problems.append(f"{job.job_id} {stage}: ETag {verdict.object_etag} != {job.etag}")
            if rec.duration_s is not None and abs(verdict.duration_s - rec.duration_s) > 0.01:
                problems.append(
                    f"{job.job_id} {stage}: {verdict.duration_s:.3f} s, the object has "
                    f"{rec.duration_s:.3f} s"
                )
        seen = self.classified.get(upload.key.rsplit("/", 1)[-1], set())
        if seen - {job.etag}:
            problems.append(f"{job.job_id}: classified other bytes ({sorted(seen - {job.etag})})")
        if job.final is not None and job.final.text_source == "transcribe":
            text = _transcript(stack, job.job_id)
            if text is not None and job.etag not in text:
                problems.append(f"{job.job_id}: fused a transcript of other bytes ({text!r})")
        return problems

    @staticmethod
    def _count_transcribe(stack: Any, jobs: dict[str, Any], report: Report) -> None:
        from alertfusion.keys import job_id_from_transcribe_job_name

        names = Counter(
            job_id_from_transcribe_job_name(name, stack.config.transcribe_job_prefix)
            for name in stack.transcribe_job_names()
        )
        for job_id, n in names.items():
            job = jobs.get(job_id or "")
            if n > 1:
                report.duplicate_transcribe.append(f"{job_id}: {n} jobs")
            elif job is None:
                report.duplicate_transcribe.append(f"{job_id}: no such job")
            elif job.failure_reason is not None and job.failure_reason.value in REFUSED:
                report.duplicate_transcribe.append(f"{job_id}: refused ({job.failure_reason})")
            elif job.client_transcript is not None:
                report.duplicate_transcribe.append(f"{job_id}: the client sent its transcript")

    @staticmethod
    def _count_alerts(stack: Any, jobs: dict[str, Any], report: Report) -> None:
        delivered = Counter(a["detail"]["alert_id"] for a in stack.alerts())
        report.duplicate_alerts = [f"{a} x{n}" for a, n in delivered.items() if n > 1]
        for job in jobs.values():
            for stage, verdict in (("preliminary", job.preliminary), ("final", job.final)):
                if verdict is not None and verdict.is_emergency:
                    if f"{job.job_id}:{stage}" not in delivered:
                        report.lost_alerts.append(f"{job.job_id}:{stage}")


def _final(job: Any) -> bool:
    return job is not None and job.status.value in ("DONE", "FAILED")


def _transcript(stack: Any, job_id: str) -> str | None:
    from alertfusion.keys import transcript_key
    from alertfusion.transcribe import parse_transcript

    try:
        body = stack.client("s3").get_object(Bucket=stack.config.bucket, Key=transcript_key(job_id))
    except Exception:
        return None
    return parse_transcript(body["Body"].read())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.soak",
        description="N uploads through the local stack with random faults; then the counts "
        "that must be zero (exit 1 when one is not).",
    )
    parser.add_argument("--uploads", type=int, required=True, help="how many uploads")
    parser.add_argument("--faults", choices=["random", "none"], default="random")
    parser.add_argument("--seed", type=int, default=0, help="seeds the faults and the audio")
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="model bundle")
    parser.add_argument(
        "--gate",
        choices=["binary", "none"],
        default="none",
        help="FUSION_GATE (default none: every model runs, so alerts are frequent)",
    )
    parser.add_argument("--json", type=Path, help="also write the counts as JSON here")
    parser.add_argument(
        "--log", type=Path, default=LOG_FILE, help=f"the handlers' logs (default {LOG_FILE})"
    )
    parser.add_argument(
        "--in-flight",
        type=int,
        default=8,
        help="at most this many unfinished jobs at once; the next upload waits (default 8)",
    )
    parser.add_argument(
        "--settle-seconds",
        type=float,
        help="how long to wait for every job to be final; the rest count as lost "
        "(default: 2 s per upload, at least 300)",
    )
    args = parser.parse_args(argv)
    if args.uploads < 1:
        parser.error("--uploads must be at least 1")
    if args.in_flight < 1:
        parser.error("--in-flight must be at least 1")
    if args.settle_seconds is not None and args.settle_seconds <= 0:
        parser.error("--settle-seconds must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        args = parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and 2
    if not (args.bundle / "manifest.json").is_file():
        sys.stderr.write(f"soak: no model bundle at {args.bundle} (run `make bundle-demo`)\n")
        return 2
    console = sys.stdout
    args.log.parent.mkdir(parents=True, exist_ok=True)
    with args.log.open("w", encoding="utf-8") as log:
        sys.stdout = log  # the handlers' logs and metrics go to the log file
        try:
            console.write(
                f"soak: {args.uploads} uploads, faults {args.faults}, seed {args.seed}, "
                f"bundle {args.bundle}; handler logs in {args.log}\n"
            )
            report = Soak(args, console).run()
        finally:
            sys.stdout = console
    report.print(console)
    if args.json is not None:
        args.json.write_text(json.dumps(report.as_dict(), indent=2), "utf-8")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
