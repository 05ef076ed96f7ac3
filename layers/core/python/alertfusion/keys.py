"""S3 key scheme, job ids and Transcribe job names.

Layout (one bucket): ``uploads/{job_id}.{ext}``, ``transcripts/{job_id}.json``,
``results/{job_id}.json``, ``backfills/{backfill_id}/`` (a backfill's batch results and
summary).

Job ids are ULIDs: 26 characters of Crockford base32 (48-bit millisecond time, 80 random
bits), so they sort by creation time and are safe everywhere (S3 keys, Transcribe job
names, URLs). ``POST /uploads`` makes them with :func:`new_job_id`.

An object under ``uploads/`` whose stem is a job id belongs to that job. Any other object
(dropped by hand: Korean names, spaces, ``+``...) gets a *derived* id: the first 128 bits
of ``sha256(decoded key, version id, eTag, sequencer)`` in the same 26-character form.
A redelivered S3 event carries the same four values, so it maps to the same job; a
re-upload of the same key is a new object version (versioned bucket) or a new
``sequencer`` (every PUT gets one), so it is a new job. Where an event carries neither
(moto's notifications have no sequencer) two uploads of identical bytes to the same key
share a job: the second is treated as a duplicate.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from urllib.parse import unquote_plus

UPLOAD_PREFIX = "uploads/"
TRANSCRIPT_PREFIX = "transcripts/"
RESULT_PREFIX = "results/"
BACKFILL_PREFIX = "backfills/"

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
JOB_ID_LENGTH = 26
#: 26 base32 characters carry 130 bits; a ULID holds 128, so the first one is 0-7
JOB_ID_RE = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$")
#: what Amazon Transcribe accepts as a job name
TRANSCRIBE_JOB_NAME_RE = re.compile(r"^[0-9a-zA-Z._-]+$")
TRANSCRIBE_JOB_NAME_MAX = 200
#: Transcribe job name = prefix + job id; the EventBridge rule matches only this prefix
DEFAULT_TRANSCRIBE_JOB_PREFIX = "alert-"
#: a prefix keeps the name within Transcribe's characters and leaves room for the job id
TRANSCRIBE_JOB_PREFIX_PATTERN = r"^[0-9a-zA-Z._-]{1,40}$"

#: extensions the pipeline accepts for uploads (lower case, no dot); what the file really
#: is gets sniffed from its bytes (alertfusion.probe), the name is only a first filter
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(
    {"wav", "flac", "ogg", "oga", "opus", "mp3", "m4a", "mp4", "3gp", "amr", "webm"}
)

#: Content-Type -> upload extension (for ``POST /uploads``; parameters like ";codecs=" are
#: stripped before the lookup, see :func:`extension_for_content_type`)
CONTENT_TYPE_EXTENSIONS: dict[str, str] = {
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/vnd.wave": "wav",
    "audio/flac": "flac",
    "audio/x-flac": "flac",
    "audio/ogg": "ogg",
    "application/ogg": "ogg",
    "audio/opus": "opus",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/mp4": "m4a",
    "audio/m4a": "m4a",
    "audio/x-m4a": "m4a",
    "video/mp4": "mp4",
    "audio/3gpp": "3gp",
    "video/3gpp": "3gp",
    "audio/amr": "amr",
    "audio/webm": "webm",
    "video/webm": "webm",
}


def new_job_id(now_ms: int | None = None) -> str:
    """A fresh ULID (time-ordered, 80 random bits)."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    if not 0 <= ms < 1 << 48:
        raise ValueError("timestamp out of the ULID range")
    value = (ms << 80) | int.from_bytes(secrets.token_bytes(10), "big")
    return _encode128(value)


def is_job_id(value: str) -> bool:
    return bool(JOB_ID_RE.fullmatch(value))


def _encode128(value: int) -> str:
    chars = []
    for _ in range(JOB_ID_LENGTH):
        chars.append(CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def decode_event_key(raw_key: str) -> str:
    """An S3 event's object key as stored: S3 URL-encodes keys in events, with ``+`` for a
    space (``%2B`` is a literal plus)."""
    return unquote_plus(raw_key)


@dataclass(frozen=True)
class UploadRef:
    """What an object key under ``uploads/`` says about its upload."""

    key: str
    #: the job id the key names (``uploads/{job_id}.{ext}``), else None
    named_job_id: str | None
    #: lower-case extension without the dot ("" when the name has none)
    extension: str

    @property
    def filename(self) -> str:
        return self.key.rsplit("/", 1)[-1]


def parse_upload_key(key: str) -> UploadRef | None:
    """Split a decoded key under ``uploads/``; None for keys outside it or "folders"."""
    if not key.startswith(UPLOAD_PREFIX) or key.endswith("/"):
        return None
    filename = key.rsplit("/", 1)[-1]
    stem, dot, ext = filename.rpartition(".")
    if not dot:
        stem, ext = filename, ""
    named = stem if key == f"{UPLOAD_PREFIX}{stem}.{ext}" and is_job_id(stem) else None
    return UploadRef(key=key, named_job_id=named, extension=ext.lower())


def derive_job_id(
    key: str, *, version_id: str | None, etag: str | None, sequencer: str | None
) -> str:
    """The deterministic job id of a hand-dropped object (see the module docstring)."""
    material = "\x1f".join(
        ("alertfusion-upload-v1", key, version_id or "", (etag or "").strip('"'), sequencer or "")
    )
    digest = hashlib.sha256(material.encode("utf-8", "surrogatepass")).digest()
    return _encode128(int.from_bytes(digest[:16], "big"))


def job_id_for_upload(
    ref: UploadRef, *, version_id: str | None, etag: str | None, sequencer: str | None
) -> str:
    """The key's own job id when it names one, else the derived id."""
    if ref.named_job_id is not None:
        return ref.named_job_id
    return derive_job_id(ref.key, version_id=version_id, etag=etag, sequencer=sequencer)


def job_id_for_listed_object(key: str, etag: str | None) -> str:
    """The job id of an object found in a bucket listing (a backfill): the starter's own rule
    (:func:`job_id_for_upload`) with what a listing carries, the key and the ETag (a listing
    has no version id and no event sequencer). An ``uploads/{job_id}.{ext}`` key keeps its
    job id, so a backfill over ``uploads/`` finds the jobs ``POST /uploads`` made."""
    ref = parse_upload_key(key)
    if ref is not None:
        return job_id_for_upload(ref, version_id=None, etag=etag, sequencer=None)
    return derive_job_id(key, version_id=None, etag=etag, sequencer=None)


def upload_key(job_id: str, extension: str) -> str:
    ext = extension.lower().lstrip(".")
    if not is_job_id(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    if ext not in SUPPORTED_EXTENSIONS:
        raise ValueError(f"unsupported extension: {extension!r}")
    return f"{UPLOAD_PREFIX}{job_id}.{ext}"


def transcript_key(job_id: str) -> str:
    return f"{TRANSCRIPT_PREFIX}{job_id}.json"


def result_key(job_id: str) -> str:
    return f"{RESULT_PREFIX}{job_id}.json"


def extension_for_content_type(content_type: str | None) -> str | None:
    """The upload extension for a Content-Type (``audio/webm;codecs=opus`` -> ``webm``)."""
    if not content_type:
        return None
    return CONTENT_TYPE_EXTENSIONS.get(content_type.split(";", 1)[0].strip().lower())


def transcribe_job_name(job_id: str, prefix: str) -> str:
    name = f"{prefix}{job_id}"
    if len(name) > TRANSCRIBE_JOB_NAME_MAX or not TRANSCRIBE_JOB_NAME_RE.fullmatch(name):
        raise ValueError(f"not a valid Transcribe job name: {name!r}")
    return name


def job_id_from_transcribe_job_name(name: str, prefix: str) -> str | None:
    """The job id inside a Transcribe job name of this pipeline, else None."""
    if not name.startswith(prefix):
        return None
    job_id = name[len(prefix) :]
    return job_id if is_job_id(job_id) else None
