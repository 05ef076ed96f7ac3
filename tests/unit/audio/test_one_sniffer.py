"""Decoding (`POST /predict`) and the starter's probe sniff with one sniffer and agree."""

from __future__ import annotations

from functools import cache

import pytest

from alertfusion.audio import sniff_format
from alertfusion.errors import AudioError, ReasonCode
from alertfusion.probe import PARSERS, TRANSCRIBE_MEDIA_FORMATS, BytesReader, probe_audio
from alertfusion.probe import sniff_container as probe_sniff
from alertfusion.sniff import CONTAINERS
from tests.corpus.bad_audio import bad_audio_cases
from tests.unit.audio.helpers import FIXTURE_FILES, make_signal, soundfile_encode

pytestmark = pytest.mark.unit

MP3_FRAME = b"\xff\xfb\x90\x00" + bytes(413)  # MPEG-1 layer III, 128 kbit/s, 44.1 kHz
ADTS_FRAME = bytes([0xFF, 0xF1, 0x50, 0x40, 0x08, 0x1F, 0xFC]) + bytes(57)
EBML = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08"


def _id3(size: int) -> bytes:
    syncsafe = bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    return b"ID3\x04\x00\x00" + syncsafe + bytes(size)


@cache
def heads() -> dict[str, bytes]:
    """Every bad-audio case, every committed recording, RIFX, and one file of each other
    container the decoder knows (made here, no binaries committed)."""
    out = {f"corpus/{case.name}": case.data for case in bad_audio_cases()}
    out.update({f"file/{path.name}": path.read_bytes() for path in FIXTURE_FILES})
    tone = make_signal(0.6, 16_000)
    for fmt, subtype in [
        ("WAV", "PCM_16"),
        ("RF64", "PCM_16"),
        ("W64", "PCM_16"),
        ("FLAC", "PCM_16"),
        ("OGG", "VORBIS"),
        ("MP3", "MPEG_LAYER_III"),
        ("AIFF", "PCM_16"),
        ("AU", "PCM_16"),
        ("CAF", "PCM_16"),
    ]:
        out[f"soundfile/{fmt}"] = soundfile_encode(tone, 16_000, fmt, subtype)
    for subtype in ("PCM_16", "FLOAT", "ULAW"):
        out[f"rifx/{subtype}"] = soundfile_encode(tone, 16_000, "WAV", subtype, endian="BIG")
    flac = out["soundfile/FLAC"]
    out.update(
        {
            "rifx/header-only": b"RIFX\x00\x00\x00\x24WAVEfmt ",
            "mp3/frames": MP3_FRAME * 3,
            "mp3/behind-id3": _id3(16) + MP3_FRAME * 2,
            "mp3/behind-a-long-id3": _id3(10_000) + MP3_FRAME * 3,
            "flac/behind-id3": _id3(1024) + flac,
            "aac/adts": ADTS_FRAME * 3,
            "aac/behind-id3": _id3(300) + ADTS_FRAME * 3,
            "webm/ebml": EBML + b"\x42\x82\x84webm",
            "matroska/ebml": EBML + b"\x42\x82\x88matroska",
            "3gp/ftyp": b"\x00\x00\x00\x1cftyp3gp4\x00\x00\x00\x00",
            "mp4/ftyp": b"\x00\x00\x00\x1cftypM4A \x00\x00\x00\x00",
            "amr/nb": b"#!AMR\n" + bytes([7 << 3 | 4]) + bytes(31),
            "amr/wb": b"#!AMR-WB\n" + bytes([8 << 3 | 4]) + bytes(60),
        }
    )
    return out


@pytest.mark.parametrize("name", list(heads()))
def test_decoder_and_probe_sniff_the_same_container(name: str) -> None:
    data = heads()[name]
    decoded, probed = sniff_format(data), probe_sniff(data)
    assert (decoded is None) == (probed is None), (decoded, probed)
    if probed is not None:
        assert CONTAINERS[probed].decoded_as == decoded


@pytest.mark.parametrize("name", list(heads()))
def test_the_probe_refuses_only_what_the_asynchronous_path_cannot_take(name: str) -> None:
    """A container the decoder reads and Transcribe takes gets through the probe's format
    check (its duration may still be unknown); anything else is UNSUPPORTED_FORMAT."""
    data = heads()[name]
    probed = probe_sniff(data)
    try:
        probe_audio(BytesReader(data), max_seconds=600)
    except AudioError as exc:
        if not data:
            assert exc.code is ReasonCode.EMPTY_AUDIO
        else:
            assert exc.code is ReasonCode.UNSUPPORTED_FORMAT
            assert probed is None or not CONTAINERS[probed].transcribe
    else:
        assert probed is not None and CONTAINERS[probed].transcribe


def test_rifx_is_wav_on_both_paths() -> None:
    data = heads()["rifx/PCM_16"]
    assert data[:4] == b"RIFX"
    assert (sniff_format(data), probe_sniff(data)) == ("wav", "rifx")
    result = probe_audio(BytesReader(data))
    assert result.duration_s == pytest.approx(0.6)
    assert result.transcribe_media_format == "wav"


def test_every_container_the_asynchronous_path_takes_has_a_header_parser() -> None:
    takes = {name for name, c in CONTAINERS.items() if c.transcribe}
    assert set(PARSERS) == takes == set(TRANSCRIBE_MEDIA_FORMATS)


def test_containers_without_an_ffmpeg_demuxer_are_libsndfile_s() -> None:
    """The decoder needs one of the two for every container it sniffs."""
    for container in CONTAINERS.values():
        assert container.soundfile or container.demuxer, container.name


def test_a_long_id3_tag_is_looked_through_by_both() -> None:
    data = _id3(10_000) + ADTS_FRAME * 3
    assert sniff_format(data) == "aac" and probe_sniff(data) == "aac"
    # given only the head, the tag hides what follows: MPEG audio is the default for both
    assert sniff_format(data[:4096]) == "mp3" and probe_sniff(data[:4096]) == "mp3"
