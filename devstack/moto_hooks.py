"""moto as the local stack's AWS: its server, the moto version required, every hook into moto."""

from __future__ import annotations

import importlib.metadata
import json
import threading
import urllib.request
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

#: The moto these hooks were written for and checked against (requirements-dev.txt pins the
#: same). Another version may rename what :class:`MotoServer` and
#: :class:`MotoTranscriptionJob` reach into: :func:`check_moto_version` refuses to start.
MOTO_VERSION = "5.2.5"
#: moto's default account (``moto.core.DEFAULT_ACCOUNT_ID``): every resource lives in it
MOTO_ACCOUNT_ID = "123456789012"
#: the state manager's name for a Transcribe job (``moto.moto_api.state_manager``)
TRANSCRIPTION_JOB_MODEL = "transcribe::transcriptionjob"

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


class MotoVersionError(RuntimeError):
    """The installed moto is not the one the hooks were written for."""

    reason = "moto_version"


def check_moto_version(installed: str | None = None) -> None:
    """Raise :class:`MotoVersionError` unless moto ``MOTO_VERSION`` is installed."""
    found = installed if installed is not None else importlib.metadata.version("moto")
    if found != MOTO_VERSION:
        raise MotoVersionError(
            f"devstack hooks into moto's internals as of moto {MOTO_VERSION} (the version "
            f"requirements-dev.txt pins), but moto {found} is installed. Install "
            f"moto[server]=={MOTO_VERSION}, or check every hook in devstack/moto_hooks.py "
            f"against moto {found}'s source and then change MOTO_VERSION and the pin."
        )


# --- public moto features ------------------------------------------------------------------


def pin_transcribe_progression() -> None:
    """Only the stand-in moves Transcribe jobs forward (public: moto's state manager).

    By default moto advances a job one state per ``GetTranscriptionJob`` call, so the
    sweeper's calls could finish a job before its transcript exists. Manual progression after
    2**62 calls per job never happens."""
    from moto.moto_api import state_manager

    state_manager.set_transition(TRANSCRIPTION_JOB_MODEL, {"progression": "manual", "times": 2**62})


def release_transcribe_progression() -> None:
    from moto.moto_api import state_manager

    state_manager.unset_transition(TRANSCRIPTION_JOB_MODEL)


# --- middleware: our code in front of moto's, on the AWS wire protocol ------------------------


class AtomicDynamoDB:
    """WSGI middleware: one DynamoDB request at a time. moto applies an UpdateItem in steps
    (a new item exists with only its key before the update expression runs, and a
    condition is checked apart from the write), so concurrent requests could see half an
    item or both pass a condition; DynamoDB makes each item write atomic."""

    def __init__(self, app: WSGIApp) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            return self._app(environ, start_response)
        with self._lock:
            # the body is produced under the lock too: moto answers with a list, not a stream
            return list(self._app(environ, start_response))


class TranscribeGaps:
    """WSGI middleware: what moto's Transcribe API lacks, added on the wire.

    * StartTranscriptionJob: answers ``LimitExceededException`` on demand (:meth:`throttle`;
      moto never throttles) before moto sees the request; after moto accepted a job it calls
      ``on_started`` with the job's name (the stand-in wakes and handles that job instead of
      polling moto continuously and listing every job).
    * GetTranscriptionJob: moto leaves ``FailureReason`` out for a FAILED job (its List call
      has it); Transcribe returns it and the pipeline reads it there: added from moto's job
      (:class:`MotoTranscriptionJob`).
    """

    def __init__(self, app: WSGIApp, *, region: str, on_started: Callable[[str], None]) -> None:
        self._app = app
        self._region = region
        self._on_started = on_started
        self._lock = threading.Lock()
        self._throttle_remaining = 0
        self.throttled_calls = 0

    def throttle(self, times: int) -> None:
        """The next `times` StartTranscriptionJob calls answer LimitExceededException."""
        with self._lock:
            self._throttle_remaining = times

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target == "Transcribe.StartTranscriptionJob":
            return self._start(environ, start_response)
        if target == "Transcribe.GetTranscriptionJob":
            return self._get(environ, start_response)
        return self._app(environ, start_response)

    def _start(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        with self._lock:
            throttle = self._throttle_remaining > 0
            if throttle:
                self._throttle_remaining -= 1
                self.throttled_calls += 1
        if throttle:
            body = json.dumps(
                {
                    "__type": "LimitExceededException",
                    "message": "Rate exceeded (injected by the local stack)",
                }
            ).encode()
            start_response(
                "400 Bad Request",
                [
                    ("Content-Type", "application/x-amz-json-1.1"),
                    ("X-Amzn-ErrorType", "LimitExceededException"),
                    ("Content-Length", str(len(body))),
                ],
            )
            return [body]
        status, headers, body = _call(self._app, environ)
        if status.startswith("200"):
            self._on_started(json.loads(body)["TranscriptionJob"]["TranscriptionJobName"])
        return _answer(start_response, status, headers, body)

    def _get(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        status, headers, body = _call(self._app, environ)
        if status.startswith("200"):
            document = json.loads(body)
            job = document.get("TranscriptionJob", {})
            if job.get("TranscriptionJobStatus") == "FAILED" and "FailureReason" not in job:
                reason = MotoTranscriptionJob(self._region, job["TranscriptionJobName"]).failure
                if reason:
                    job["FailureReason"] = reason
                    body = json.dumps(document).encode()
        return _answer(start_response, status, headers, body)


def _call(app: WSGIApp, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run `app` to the end: its status, headers and whole body."""
    answered: list[Any] = []
    written: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        answered[:] = [status, headers]
        return written.append

    result = app(environ, start_response)
    try:
        body = b"".join([*written, *result])
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return answered[0], answered[1], body


def _answer(
    start_response: Any, status: str, headers: list[tuple[str, str]], body: bytes
) -> list[bytes]:
    kept = [(k, v) for k, v in headers if k.lower() != "content-length"]
    start_response(status, [*kept, ("Content-Length", str(len(body)))])
    return [body]


# --- private hooks ---------------------------------------------------------------------------


#: DynamoDB's AttributeValue members whose wire form is the value itself (strings and
#: string lists); M and L hold AttributeValues; anything else goes through moto's serializer
_PLAIN_STRING_TYPES = frozenset({"S", "N"})
_PLAIN_LIST_TYPES = frozenset({"SS", "NS"})
_fast_dynamodb: dict[str, Any] = {}


def _plain_attribute_value(value: Any) -> Any:
    """The wire form of one DynamoDB AttributeValue as moto's result holds it (``{"S": ...}``),
    or None when it holds anything but strings, string sets, maps and lists of those (then
    moto's own serializer does it: bytes, booleans, NULL)."""
    if not isinstance(value, dict) or len(value) != 1:
        return None
    ((tag, inner),) = value.items()
    if tag in _PLAIN_STRING_TYPES:
        return {tag: inner} if type(inner) is str else None
    if tag in _PLAIN_LIST_TYPES:
        if type(inner) is list and all(type(v) is str for v in inner):
            return {tag: list(inner)}
        return None
    if tag == "M" and type(inner) is dict:
        out = {}
        for name, member in inner.items():
            plain = _plain_attribute_value(member)
            if plain is None:
                return None
            out[name] = plain
        return {"M": out}
    if tag == "L" and type(inner) is list:
        items = []
        for member in inner:
            plain = _plain_attribute_value(member)
            if plain is None:
                return None
            items.append(plain)
        return {"L": items}
    return None


def install_fast_dynamodb_serializer() -> None:
    """Serialize DynamoDB's item attributes in one step instead of moto's generic walk.

    Private hook. moto 5.2.5 serializes every response by walking the botocore shape, and for
    each AttributeValue it looks up all ten members (S, N, B, ..., BOOL) through its alias
    providers: most of the CPU time of a GetItem, BatchGetItem or UpdateItem with ALL_NEW
    goes there, and the local stack's handlers take turns with the server for the one CPU
    the process gets. moto's result already holds each attribute in wire form
    (``dynamo_to_dict``): for the ones made only of strings, numbers, string sets, maps and
    lists the answer is that value, copied; the others (binary, booleans, NULL) and any
    response with transformers go through moto's serializer as before, so the bytes on the
    wire are the same (tests/unit/devstack/test_moto_hooks.py compares them). It registers a
    ``JSONSerializer`` subclass for ``dynamodb`` in ``moto.core.serialize
    .SERVICE_SPECIFIC_SERIALIZERS``, which ``get_serializer_class`` reads per response."""
    if _fast_dynamodb:
        return
    from moto.core import serialize

    class FastAttributeValues(serialize.JSONSerializer):
        def _serialize_type_structure(
            self, serialized: Any, value: Any, shape: Any, key: str
        ) -> None:
            if shape.name == "AttributeValue" and not getattr(
                self._value_picker, "response_transformers", None
            ):
                plain = _plain_attribute_value(value)
                if plain is not None:
                    self._default_serialize(serialized, plain, shape, key)
                    return
            super()._serialize_type_structure(serialized, value, shape, key)

    registry = serialize.SERVICE_SPECIFIC_SERIALIZERS
    _fast_dynamodb["before"] = registry.get("dynamodb")
    registry["dynamodb"] = {**(registry.get("dynamodb") or {}), "json": FastAttributeValues}


def remove_fast_dynamodb_serializer() -> None:
    if not _fast_dynamodb:
        return
    from moto.core import serialize

    before = _fast_dynamodb.pop("before")
    if before is None:
        serialize.SERVICE_SPECIFIC_SERIALIZERS.pop("dynamodb", None)
    else:
        serialize.SERVICE_SPECIFIC_SERIALIZERS["dynamodb"] = before


class MotoServer:
    """moto's server on a free 127.0.0.1 port in a thread, its app wrapped by `wrap`.

    Private hook. moto lacks: its documented ``ThreadedMotoServer`` cannot wrap the WSGI app
    it serves (the middlewares above), and its ``stop()`` leaves the listening socket open.
    It touches (moto 5.2.5): ``DomainDispatcherApplication``, ``create_backend_app`` and
    ``MotoRequestHandler``, as ``moto.server`` exports them: the three pieces
    ``ThreadedMotoServer._server_entry`` assembles, assembled here the same way and served by
    werkzeug's ``make_server``. Its state is reset through moto's documented
    ``POST /moto-api/reset``.
    """

    def __init__(self, wrap: Callable[[WSGIApp], WSGIApp]) -> None:
        self._wrap = wrap
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> str:
        from moto.server import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        app = self._wrap(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            "127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler
        )
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="local-moto", daemon=True
        )
        self._thread.start()
        return self.url

    def reset(self) -> None:
        """Forget every resource (moto's state is process-wide, whoever made it)."""
        if self._server is None:
            return
        request = urllib.request.Request(f"{self.url}/moto-api/reset", data=b"", method="POST")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=30) as answer:
            answer.read()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        if self._thread is not None:
            self._thread.join()
        self._server.server_close()
        self._server = None
        self._thread = None


class MotoTranscriptionJob:
    """One Transcribe job as moto holds it, read and moved by hand.

    Private hook. moto lacks: no API finishes or fails a job. Its state manager can only move
    every job, one step per N ``GetTranscriptionJob`` calls or per N seconds, along
    QUEUED → IN_PROGRESS → COMPLETED: it cannot fail a job, cannot wait until one job's
    transcript file is written, and lets anyone's GET (the sweeper's) finish a job. So the
    progression is pinned (:func:`pin_transcribe_progression`) and the stand-in moves each job.
    It touches (moto 5.2.5): ``moto.transcribe.models.transcribe_backends[account][region]
    .transcriptions[name]``, a ``FakeTranscriptionJob``; reads ``_output_bucket_name`` and
    ``output_key`` (what StartTranscriptionJob asked for; GetTranscriptionJob does not show
    them) and ``failure_reason``; writes ``start_time``, ``completion_time``, ``transcript``,
    ``failure_reason`` and ``status`` (``ManagedState``'s setter): what
    ``FakeTranscriptionJob.advance()`` sets when moto moves a job itself.
    """

    def __init__(self, region: str, name: str) -> None:
        from moto.transcribe.models import transcribe_backends

        self._job: Any = transcribe_backends[MOTO_ACCOUNT_ID][region].transcriptions.get(name)
        if self._job is None:
            raise KeyError(f"moto holds no Transcribe job {name!r} in {region}")

    @property
    def output(self) -> tuple[str | None, str | None]:
        """(OutputBucketName, OutputKey) as StartTranscriptionJob gave them."""
        return self._job._output_bucket_name, self._job.output_key

    @property
    def failure(self) -> str | None:
        reason: str | None = self._job.failure_reason
        return reason

    def move_to(
        self, status: str, *, transcript_uri: str | None = None, failure_reason: str | None = None
    ) -> None:
        """The job's new status, with the times and fields Transcribe sets with it."""
        job, now = self._job, datetime.now(UTC)
        if job.start_time is None:
            job.start_time = now
        if status in ("COMPLETED", "FAILED"):
            job.completion_time = now
        if transcript_uri is not None:
            job.transcript = {"TranscriptFileUri": transcript_uri}
        if failure_reason is not None:
            job.failure_reason = failure_reason
        job.status = status
