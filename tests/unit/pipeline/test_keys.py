"""S3 key scheme, job ids and Transcribe job names."""

from __future__ import annotations

import re
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertfusion.keys import (
    TRANSCRIBE_JOB_NAME_MAX,
    decode_event_key,
    derive_job_id,
    extension_for_content_type,
    is_job_id,
    job_id_for_upload,
    job_id_from_transcribe_job_name,
    new_job_id,
    parse_upload_key,
    result_key,
    transcribe_job_name,
    transcript_key,
    upload_key,
)

pytestmark = pytest.mark.unit

FIXTURE_ID = "01JD7Q3K8W2S9V4M6T1R5Y0ZXB"
NAME_RE = re.compile(r"^[0-9a-zA-Z._-]+$")
#: the longest prefix settings allow (TRANSCRIBE_JOB_PREFIX: 1-40 characters)
LONGEST_PREFIX = "p" * 40


def test_new_job_ids_are_ulids_ordered_by_time() -> None:
    ids = [new_job_id(now_ms=1_700_000_000_000 + i) for i in range(50)]
    assert all(is_job_id(i) and len(i) == 26 for i in ids)
    assert ids == sorted(ids)
    assert len({new_job_id() for _ in range(1000)}) == 1000
    # the fixtures' ids are ULIDs too
    assert is_job_id(FIXTURE_ID)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "01JD7Q3K8W2S9V4M6T1R5Y0ZX",
        "01JD7Q3K8W2S9V4M6T1R5Y0ZXBB",
        "81JD7Q3K8W2S9V4M6T1R5Y0ZXB",
        "01JD7Q3K8W2S9V4M6T1R5Y0ZXI",
        "01jd7q3k8w2s9v4m6t1r5y0zxb",
        "01JD7Q3K8W2S9V4M6T1R5Y0ZX/",
    ],
)
def test_is_job_id_rejects(value: str) -> None:
    assert not is_job_id(value)


def test_new_job_id_refuses_timestamps_outside_48_bits() -> None:
    with pytest.raises(ValueError):
        new_job_id(now_ms=1 << 48)


def test_layout() -> None:
    assert upload_key(FIXTURE_ID, "WAV") == f"uploads/{FIXTURE_ID}.wav"
    assert transcript_key(FIXTURE_ID) == f"transcripts/{FIXTURE_ID}.json"
    assert result_key(FIXTURE_ID) == f"results/{FIXTURE_ID}.json"
    with pytest.raises(ValueError):
        upload_key(FIXTURE_ID, "txt")
    with pytest.raises(ValueError):
        upload_key("not-an-id", "wav")


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("uploads/%EC%8B%A0%EA%B3%A0+%EB%85%B9%EC%9D%8C+%281%29.m4a", "uploads/신고 녹음 (1).m4a"),
        ("uploads/a%2Bb.wav", "uploads/a+b.wav"),
        ("uploads/a+b.wav", "uploads/a b.wav"),
        ("uploads/100%25.wav", "uploads/100%.wav"),
    ],
)
def test_event_keys_decode_like_s3_encodes_them(raw: str, decoded: str) -> None:
    assert decode_event_key(raw) == decoded


def test_parse_upload_key() -> None:
    ref = parse_upload_key(f"uploads/{FIXTURE_ID}.WAV")
    assert ref is not None and ref.named_job_id == FIXTURE_ID and ref.extension == "wav"
    korean = parse_upload_key("uploads/신고 녹음 (1).m4a")
    assert korean is not None and korean.named_job_id is None and korean.extension == "m4a"
    assert korean.filename == "신고 녹음 (1).m4a"
    nested = parse_upload_key(f"uploads/sub/{FIXTURE_ID}.wav")
    assert nested is not None and nested.named_job_id is None  # only directly under uploads/
    bare = parse_upload_key("uploads/README")
    assert bare is not None and bare.extension == ""
    assert parse_upload_key("transcripts/x.json") is None
    assert parse_upload_key("uploads/folder/") is None


def test_derived_ids_depend_on_the_object_not_the_delivery() -> None:
    base = {"version_id": None, "etag": "5d41402abc4b2a76b9719d911017c592", "sequencer": "0055"}
    key = "uploads/신고 녹음 (1).m4a"
    first = derive_job_id(key, **base)
    assert derive_job_id(key, **base) == first  # a redelivered event
    assert derive_job_id(key, **{**base, "etag": '"5d41402abc4b2a76b9719d911017c592"'}) == first
    assert derive_job_id(key, **{**base, "sequencer": "0056"}) != first  # a new PUT
    assert derive_job_id(key, **{**base, "etag": "0" * 32}) != first  # other bytes
    assert derive_job_id(key, **{**base, "version_id": "v2"}) != first
    assert derive_job_id(key + " ", **base) != first


def test_content_type_extensions() -> None:
    assert extension_for_content_type("audio/webm;codecs=opus") == "webm"
    assert extension_for_content_type("Audio/MP4") == "m4a"
    assert extension_for_content_type("text/plain") is None
    assert extension_for_content_type(None) is None


def test_transcribe_job_names() -> None:
    assert transcribe_job_name(FIXTURE_ID, "alert-") == f"alert-{FIXTURE_ID}"
    assert job_id_from_transcribe_job_name(f"alert-{FIXTURE_ID}", "alert-") == FIXTURE_ID
    assert job_id_from_transcribe_job_name(f"other-{FIXTURE_ID}", "alert-") is None
    assert job_id_from_transcribe_job_name("alert-not-a-job", "alert-") is None
    with pytest.raises(ValueError):
        transcribe_job_name(FIXTURE_ID, "bad prefix ")


@settings(max_examples=300, deadline=None)
@given(
    name=st.text(min_size=0, max_size=300),
    etag=st.text(alphabet="0123456789abcdef", min_size=32, max_size=32),
    sequencer=st.one_of(st.none(), st.text(alphabet="0123456789ABCDEF", min_size=16, max_size=18)),
    version=st.one_of(st.none(), st.text(min_size=1, max_size=40)),
    plus_style=st.booleans(),
)
def test_any_object_key_gets_a_safe_deterministic_job_id(
    name: str, etag: str, sequencer: str | None, version: str | None, plus_style: bool
) -> None:
    key = "uploads/" + name
    # S3 URL-encodes keys in events (form style: '+' for a space); both styles decode back
    raw = quote_plus(key, safe="/") if plus_style else quote(key, safe="/")
    assert decode_event_key(raw) == key
    ref = parse_upload_key(key)
    if ref is None:
        assert key.endswith("/")
        return
    job_id = job_id_for_upload(ref, version_id=version, etag=etag, sequencer=sequencer)
    assert is_job_id(job_id)
    assert job_id == job_id_for_upload(ref, version_id=version, etag=etag, sequencer=sequencer)
    job_name = transcribe_job_name(job_id, LONGEST_PREFIX)
    assert NAME_RE.fullmatch(job_name) and len(job_name) <= TRANSCRIBE_JOB_NAME_MAX
    assert job_id_from_transcribe_job_name(job_name, LONGEST_PREFIX) == job_id
    if ref.named_job_id is None:
        other = job_id_for_upload(
            ref, version_id=version, etag=etag[::-1] + "x", sequencer=sequencer
        )
        assert other != job_id


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=(1 << 48) - 1), st.sampled_from(["wav", "m4a", "webm"]))
def test_keys_named_after_a_job_id_keep_it(ms: int, ext: str) -> None:
    job_id = new_job_id(now_ms=ms)
    ref = parse_upload_key(upload_key(job_id, ext))
    assert ref is not None
    assert job_id_for_upload(ref, version_id=None, etag="e", sequencer="s") == job_id
