"""Checks of client input before anything expensive runs: audio bytes (sniffed, never the
file name), text, and `/predict_s3` locations (bucket, prefixes, key shape) with the
bounded download of the object into memory."""

from __future__ import annotations

import re
from typing import Any

from alertfusion.audio import SNIFF_BYTES, sniff_format
from alertfusion.aws import S3_DENIED_CODES, S3_NOT_FOUND_CODES, error_code
from alertfusion.errors import (
    AlertFusionError,
    AudioError,
    ConfigError,
    InputError,
    ReasonCode,
    TextError,
    TransientError,
)
from functions.api.log import logger

#: S3's own limit on key length (bytes of UTF-8)
MAX_KEY_BYTES = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LABEL_UNSAFE = re.compile(r"[^\w.\- ()\[\]]+")


def display_name(filename: str | None, default: str = "the audio") -> str:
    """A client's file name as a harmless label for messages (never a path)."""
    if not filename:
        return default
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _LABEL_UNSAFE.sub("_", base).strip()[:100]
    return cleaned or default


def check_audio_bytes(audio: bytes, name: str) -> None:
    """EMPTY_AUDIO / UNSUPPORTED_FORMAT from the bytes alone (the decoder agrees: the same
    sniffing decides there), before the models are loaded for nothing."""
    if not audio:
        raise AudioError(f"{name} is empty (0 bytes)", code=ReasonCode.EMPTY_AUDIO)
    if sniff_format(audio[:SNIFF_BYTES]) is None:
        raise AudioError(
            f"{name} is not a supported audio file (WAV, FLAC, OGG, MP3, M4A/AAC, 3GP/AMR, "
            "WebM); the format is judged from the bytes, not the name",
            code=ReasonCode.UNSUPPORTED_FORMAT,
        )


def clean_text(text: str | None, max_chars: int) -> str | None:
    """None for no text (absent, or only whitespace: old clients always send the field);
    TEXT_TOO_LONG above `max_chars`."""
    if text is None or not text.strip():
        return None
    if len(text) > max_chars:
        raise TextError(
            f"the text has {len(text)} characters; at most {max_chars} are accepted",
            code=ReasonCode.TEXT_TOO_LONG,
        )
    return text


def _check_key(key: str) -> None:
    """A plain object key: relative, no empty/dot segments, no control characters."""
    problem = None
    if not key:
        problem = "is empty"
    elif len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        problem = f"is longer than {MAX_KEY_BYTES} bytes"
    elif _CONTROL.search(key) or "\\" in key:
        problem = "holds control characters or backslashes"
    elif key.startswith("/"):
        problem = "is absolute"
    elif key.endswith("/"):
        problem = "names a folder, not an object"
    elif any(part in ("", ".", "..") for part in key.split("/")):
        problem = "has empty, '.' or '..' segments"
    if problem:
        raise InputError(f"the S3 key {problem}", code=ReasonCode.INVALID_INPUT)


def resolve_key(*, s3_key: str | None, s3_uri: str | None, bucket: str, prefixes: list[str]) -> str:
    """The key to read, from `s3_key` or `s3_uri`. INVALID_INPUT (422) for a malformed or
    ambiguous location, FORBIDDEN_LOCATION (403) for another bucket or a key outside
    the allowed prefixes."""
    if s3_key and s3_uri:
        raise InputError("give s3_key or s3_uri, not both", code=ReasonCode.INVALID_INPUT)
    if s3_uri:
        if not s3_uri.startswith("s3://"):
            raise InputError("s3_uri must look like s3://bucket/key", code=ReasonCode.INVALID_INPUT)
        uri_bucket, _, key = s3_uri[len("s3://") :].partition("/")
        if uri_bucket != bucket:
            raise InputError(
                "only objects of the pipeline's own bucket can be classified",
                code=ReasonCode.FORBIDDEN_LOCATION,
            )
    elif s3_key:
        key = s3_key
    else:
        raise InputError("s3_key or s3_uri is required", code=ReasonCode.INVALID_INPUT)
    _check_key(key)
    if not any(key.startswith(prefix) for prefix in prefixes):
        raise InputError(
            f"only keys under {', '.join(prefixes)} can be classified",
            code=ReasonCode.FORBIDDEN_LOCATION,
        )
    return key


def read_object(s3: Any, bucket: str, key: str, max_bytes: int) -> bytes:
    """The object's bytes, in memory, never more than `max_bytes` (FILE_TOO_LARGE).

    A missing object is OBJECT_NOT_FOUND (404). Without ``s3:ListBucket`` S3 answers
    AccessDenied instead of NoSuchKey for a missing key; the key was checked to lie under
    a prefix this service may read, so AccessDenied is answered as OBJECT_NOT_FOUND too
    (and logged, since a broken role would look the same). Other S3 trouble is
    UPSTREAM_UNAVAILABLE (503).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = error_code(exc)
        if code in S3_NOT_FOUND_CODES or code in S3_DENIED_CODES:
            if code in S3_DENIED_CODES:
                logger.warning("S3 denied a read under an allowed prefix", extra={"s3": code})
            raise InputError(
                "no object with this key (or it is not readable)",
                code=ReasonCode.OBJECT_NOT_FOUND,
            ) from exc
        if code == "NoSuchBucket":
            raise ConfigError(f"the bucket {bucket!r} does not exist") from exc
        raise TransientError(f"GetObject: {code or 'error'}") from exc
    except BotoCoreError as exc:
        raise TransientError(f"GetObject: {type(exc).__name__}") from exc
    body = response["Body"]
    try:
        declared = int(response.get("ContentLength") or 0)
        if declared > max_bytes:
            raise _too_large(declared, max_bytes)
        # read one byte more than allowed: a length that lies cannot get more through
        data = body.read(max_bytes + 1)
    except AlertFusionError:
        raise
    except (BotoCoreError, OSError) as exc:
        raise TransientError(f"reading the object: {type(exc).__name__}") from exc
    finally:
        body.close()
    if len(data) > max_bytes:
        raise _too_large(len(data), max_bytes)
    return bytes(data)


def _too_large(size: int, max_bytes: int) -> AudioError:
    return AudioError(
        f"the object has {size} bytes; at most {max_bytes} are accepted",
        code=ReasonCode.FILE_TOO_LARGE,
    )
