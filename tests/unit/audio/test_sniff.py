"""Format sniffing by magic bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alertfusion.audio import SNIFF_BYTES, sniff_format

pytestmark = pytest.mark.unit

# an MPEG-1 layer III frame header: 128 kbit/s, 44.1 kHz, no padding -> 417-byte frames
MP3_FRAME = b"\xff\xfb\x90\x00" + bytes(413)
# an ADTS AAC-LC frame header: 44.1 kHz, mono, 64-byte frames
ADTS_FRAME = bytes([0xFF, 0xF1, 0x50, 0x40, 0x08, 0x1F, 0xFC]) + bytes(57)
WEBM_EBML = (
    b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01"
    b"\x42\xf2\x81\x04\x42\xf3\x81\x08\x42\x82\x84webm"
)
MKV_EBML = WEBM_EBML.replace(b"\x84webm", b"\x88matroska")


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "wav"),
        (b"RF64\xff\xff\xff\xffWAVEds64", "wav"),
        (b"BW64\xff\xff\xff\xffWAVEds64", "wav"),
        (b"RIFX\x00\x00\x00\x24WAVEfmt ", "wav"),
        (b"riff\x2e\x91\xcf\x11\xa5\xd6\x28\xdb\x04\xc1\x00\x00", "w64"),
        (b"fLaC\x00\x00\x00\x22", "flac"),
        (b"OggS\x00\x02" + bytes(22), "ogg"),
        (b"#!AMR\n", "amr"),
        (b"#!AMR-WB\n", "amr"),
        (WEBM_EBML, "webm"),
        (MKV_EBML, "mkv"),
        (b"\x00\x00\x00\x1cftypM4A \x00\x00\x00\x00", "m4a"),
        (b"\x00\x00\x00\x1cftypmp42\x00\x00\x00\x00", "m4a"),
        (b"\x00\x00\x00\x1cftypisom\x00\x00\x02\x00", "m4a"),
        (b"\x00\x00\x00\x1cftyp3gp4\x00\x00\x00\x00", "3gp"),
        (b"\x00\x00\x00\x1cftyp3g2a\x00\x00\x00\x00", "3gp"),
        (b"FORM\x00\x00\x10\x00AIFFCOMM", "aiff"),
        (b"FORM\x00\x00\x10\x00AIFCFVER", "aiff"),
        (b".snd\x00\x00\x00\x18", "au"),
        (b"caff\x00\x01\x00\x00", "caf"),
        (MP3_FRAME * 3, "mp3"),
        (b"\x00" * 100 + MP3_FRAME * 3, "mp3"),  # a little junk before the first frame
        (b"ID3\x04\x00\x00\x00\x00\x00\x10" + bytes(16) + MP3_FRAME * 2, "mp3"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x10" + bytes(16) + ADTS_FRAME * 3, "aac"),
        (b"ID3\x04\x00\x00\x00\x7f\x7f\x7f" + bytes(100), "mp3"),  # tag longer than the head
        (ADTS_FRAME * 3, "aac"),
    ],
)
def test_magic_bytes(head: bytes, expected: str) -> None:
    assert sniff_format(head) == expected


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"RIFF",
        b"RIFF\x00\x00\x00\x00AVI LIST",  # RIFF, but video
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",  # JPEG starts with 0xFF too
        b'{"audio": "x.wav"}',
        b"%PDF-1.7",
        b"PK\x03\x04",
        b"<html>",
        "한국어 텍스트".encode(),
        b"\x00" * 10 + b"\xff\xfb\x90\x00" + bytes(100),  # one header, not at the start, alone
        b"\xff\xfb\x90\x00" + bytes(413) + b"\x12\x34\x56\x78" + bytes(10),  # does not chain
        bytes(SNIFF_BYTES),
    ],
)
def test_not_audio(head: bytes) -> None:
    assert sniff_format(head) is None


def test_a_file_shorter_than_one_frame_is_still_mpeg() -> None:
    # nothing can chain, but a valid header at byte 0 is what a tiny MP3 looks like
    assert sniff_format(MP3_FRAME[:200]) == "mp3"


def test_only_the_head_counts() -> None:
    assert sniff_format(bytes(SNIFF_BYTES) + b"RIFF\x24\x00\x00\x00WAVEfmt ") is None


@given(st.binary(max_size=SNIFF_BYTES + 16))
def test_sniffing_never_raises(head: bytes) -> None:
    result = sniff_format(head)
    assert result is None or isinstance(result, str)


def test_id3_tag_size_is_syncsafe() -> None:
    size = 300  # 0x12C -> syncsafe bytes 00 00 02 2C
    tag = b"ID3\x03\x00\x00" + struct.pack(">I", ((size >> 7) << 8) | (size & 0x7F)) + bytes(size)
    assert sniff_format(tag + ADTS_FRAME * 3) == "aac"
