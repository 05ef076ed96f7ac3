"""Header duration probe: real encodes (PyAV), hand-made edge cases, lying headers, fuzz."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alertfusion.errors import AudioError, ReasonCode
from alertfusion.probe import (
    BLOCK_BYTES,
    MAX_REQUESTS,
    BytesReader,
    ProbeResult,
    probe_audio,
    sniff_container,
)
from tests.conftest import FIXTURES, SAMPLES
from tests.pipeline_media import encode, wav_bytes

pytestmark = pytest.mark.unit


def probe(data: bytes, **kwargs: float) -> tuple[ProbeResult, int]:
    reader = BytesReader(data)
    result = probe_audio(reader, **kwargs)
    return result, reader.requests


# (id, encoder, format, duration, tolerance): tolerances are the container's granularity
# (MP3 frame counts include the encoder's delay and padding; AMR frames are 20 ms)
ENCODED: list[tuple[str, Callable[[], bytes], str, float, float]] = [
    ("wav-16k-mono", lambda: wav_bytes(2.5), "wav", 2.5, 1e-9),
    (
        "wav-48k-stereo-float",
        lambda: encode("wav", "pcm_f32le", seconds=1.5, rate=48_000, channels=2),
        "wav",
        1.5,
        1e-9,
    ),
    ("flac", lambda: encode("flac", "flac", seconds=2.5, rate=44_100), "flac", 2.5, 1e-9),
    ("ogg-opus", lambda: encode("ogg", "libopus", seconds=2.5, rate=48_000), "ogg", 2.5, 0.001),
    (
        "ogg-vorbis",
        lambda: encode(
            "ogg",
            "vorbis",
            seconds=2.5,
            rate=44_100,
            channels=2,
            codec_options={"strict": "experimental"},
        ),
        "ogg",
        2.5,
        0.01,
    ),
    ("ogg-flac", lambda: encode("ogg", "flac", seconds=2.5, rate=44_100), "ogg", 2.5, 1e-9),
    (
        "mp3-xing-id3",
        lambda: encode("mp3", "libmp3lame", seconds=2.5, rate=44_100),
        "mp3",
        2.5,
        0.06,
    ),
    (
        "mp3-xing-no-id3",
        lambda: encode(
            "mp3", "libmp3lame", seconds=2.5, rate=44_100, container_options={"id3v2_version": "0"}
        ),
        "mp3",
        2.5,
        0.06,
    ),
    (
        "mp3-mpeg2-22k",
        lambda: encode("mp3", "libmp3lame", seconds=2.5, rate=22_050),
        "mp3",
        2.5,
        0.08,
    ),
    (
        "m4a-moov-at-end",
        lambda: encode("ipod", "aac", seconds=30, rate=44_100, bit_rate=128_000),
        "mp4",
        30.0,
        0.03,
    ),
    (
        "3gp-amr",
        lambda: encode("3gp", "libopencore_amrnb", seconds=2.5, rate=8_000),
        "3gp",
        2.5,
        0.03,
    ),
    (
        "amr-nb",
        lambda: encode("amr", "libopencore_amrnb", seconds=2.5, rate=8_000),
        "amr",
        2.5,
        0.041,
    ),
    (
        "webm-with-duration",
        lambda: encode("webm", "libopus", seconds=2.5, rate=48_000),
        "webm",
        2.5,
        0.02,
    ),
]


@pytest.mark.parametrize(
    ("make", "fmt", "seconds", "tolerance"),
    [case[1:] for case in ENCODED],
    ids=[case[0] for case in ENCODED],
)
def test_encoded_files(
    make: Callable[[], bytes], fmt: str, seconds: float, tolerance: float
) -> None:
    data = make()
    result, requests = probe(data)
    assert result.format == fmt
    assert result.duration_s == pytest.approx(seconds, abs=tolerance)
    assert result.exact
    assert sniff_container(data[:BLOCK_BYTES]) == fmt
    assert requests <= 3


def test_moov_after_a_large_mdat_costs_one_more_read() -> None:
    data = encode("ipod", "aac", seconds=30, rate=44_100, bit_rate=128_000)
    assert len(data) > 2 * BLOCK_BYTES
    _, requests = probe(data)
    assert requests == 2  # the head, then the moov at the end


def _boxes(data: bytes) -> list[bytes]:
    out, offset = [], 0
    while offset < len(data):
        size = struct.unpack(">I", data[offset : offset + 4])[0]
        out.append(data[offset : offset + size])
        offset += size
    return out


def test_moov_before_mdat() -> None:
    boxes = _boxes(encode("ipod", "aac", seconds=4, rate=44_100))
    kinds = [b[4:8] for b in boxes]
    moov = boxes.pop(kinds.index(b"moov"))
    faststart = boxes[0] + moov + b"".join(boxes[1:])
    result, requests = probe(faststart)
    assert result.duration_s == pytest.approx(4.0, abs=0.03) and requests == 1


def test_fragmented_mp4_without_duration_is_unknown() -> None:
    data = encode(
        "mp4",
        "aac",
        seconds=2.5,
        rate=44_100,
        container_options={"movflags": "+frag_keyframe+empty_moov"},
    )
    result, _ = probe(data)
    assert result.format == "mp4" and result.duration_s is None and result.detail


def test_mediarecorder_style_webm_has_no_duration() -> None:
    """A streamed WebM (non-seekable writer, like MediaRecorder) carries no Duration."""
    data = encode("webm", "libopus", seconds=2.5, rate=48_000, seekable=False)
    result, _ = probe(data)
    assert result.format == "webm" and result.duration_s is None


def test_cbr_mp3_without_header_is_an_estimate() -> None:
    data = encode(
        "mp3",
        "libmp3lame",
        seconds=3.0,
        rate=44_100,
        bit_rate=64_000,
        container_options={"write_xing": "0", "id3v2_version": "0"},
    )
    result, _ = probe(data)
    assert result.format == "mp3" and not result.exact
    assert result.duration_s == pytest.approx(3.0, rel=0.05)


def _mp3_frame(vbri_frames: int | None = None) -> bytes:
    header = b"\xff\xfb\x90\x64"  # MPEG-1 layer III, 128 kbit/s, 44.1 kHz: 417 bytes
    body = bytearray(417 - 4)
    if vbri_frames is not None:
        vbri = b"VBRI" + struct.pack(">HHHII", 1, 0, 75, 417 * vbri_frames, vbri_frames)
        body[32 : 32 + len(vbri)] = vbri
    return header + bytes(body)


def test_vbri_header() -> None:
    data = _mp3_frame(vbri_frames=200) + _mp3_frame() * 20
    result, _ = probe(data)
    assert result.format == "mp3" and result.exact
    assert result.duration_s == pytest.approx(200 * 1152 / 44_100)


def test_amr_wb_frame_walk() -> None:
    frame = bytes([8 << 3 | 0x04]) + bytes(60)  # mode 8 (23.85 kbit/s): 61 bytes, 20 ms
    result, _ = probe(b"#!AMR-WB\n" + frame * 150)
    assert result.format == "amr" and result.duration_s == pytest.approx(3.0)


def test_amr_walk_stops_past_the_maximum() -> None:
    frame = bytes([7 << 3 | 0x04]) + bytes(31)  # AMR-NB 12.2 kbit/s
    data = b"#!AMR\n" + frame * 50 * 700  # 700 s, 1.1 MB
    result, requests = probe(data, max_seconds=10)
    assert result.duration_s is not None and 10 < result.duration_s < 10.1
    assert requests == 1
    full, _ = probe(data, max_seconds=1000)
    assert full.duration_s == pytest.approx(700)


def test_amr_reserved_frame_type_is_unknown() -> None:
    result, _ = probe(b"#!AMR\n" + bytes([12 << 3]) + bytes(40))
    assert result.duration_s is None


def _riff(chunks: list[tuple[bytes, bytes]], *, form: bytes = b"RIFF") -> bytes:
    body = b"".join(
        cid + struct.pack("<I", len(data)) + data + b"\0" * (len(data) & 1) for cid, data in chunks
    )
    return form + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


def _fmt(rate: int = 16_000, channels: int = 1, bits: int = 16, tag: int = 1) -> bytes:
    align = channels * bits // 8
    return struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)


def test_wav_with_a_large_chunk_before_data() -> None:
    pcm = bytes(16_000 * 2 * 2)  # 2 s
    data = _riff([(b"fmt ", _fmt()), (b"LIST", bytes(200_000)), (b"data", pcm)])
    result, requests = probe(data)
    assert result.duration_s == pytest.approx(2.0) and requests == 2


@pytest.mark.parametrize("declared", [0, 0xFFFFFFFF, 10**9])
def test_wav_data_size_streaming_or_lying_uses_what_is_there(declared: int) -> None:
    pcm = bytes(16_000 * 2)  # 1 s
    head = b"RIFF" + struct.pack("<I", 0) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + _fmt()
    data = head + b"data" + struct.pack("<I", declared) + pcm
    result, _ = probe(data)
    assert result.duration_s == pytest.approx(1.0)


def test_rf64() -> None:
    pcm = bytes(8_000 * 2 * 3)  # 3 s at 8 kHz 16-bit mono
    ds64 = struct.pack("<QQQI", 0, len(pcm), len(pcm) // 2, 0)
    fmt = _fmt(rate=8_000)
    body = (
        b"ds64" + struct.pack("<I", len(ds64)) + ds64 + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    )
    data = b"RF64" + b"\xff\xff\xff\xff" + b"WAVE" + body + b"data\xff\xff\xff\xff" + pcm
    result, _ = probe(data)
    assert result.format == "rf64" and result.duration_s == pytest.approx(3.0)


@pytest.mark.parametrize("declared", [16_000 * 2, 0xFFFFFFFF])
def test_rifx_big_endian_wav(declared: int) -> None:
    pcm = bytes(16_000 * 2)  # 1 s
    fmt = struct.pack(">HHIIHH", 1, 1, 16_000, 32_000, 2, 16)
    body = b"fmt " + struct.pack(">I", len(fmt)) + fmt + b"data" + struct.pack(">I", declared)
    data = b"RIFX" + struct.pack(">I", 4 + len(body) + len(pcm)) + b"WAVE" + body + pcm
    result, _ = probe(data)
    assert result.format == "rifx" and result.duration_s == pytest.approx(1.0)
    assert result.transcribe_media_format == "wav"


def test_wav_extensible_and_compressed() -> None:
    ext = (
        struct.pack("<HHIIHHHHI", 0xFFFE, 2, 44_100, 44_100 * 4, 4, 16, 22, 16, 3)
        + struct.pack("<H", 1)
        + bytes(14)
    )
    data = _riff([(b"fmt ", ext), (b"data", bytes(44_100 * 4))])
    assert probe(data)[0].duration_s == pytest.approx(1.0)
    adpcm = struct.pack("<HHIIHH", 0x11, 1, 8_000, 4_055, 256, 4)
    with_fact = _riff(
        [(b"fmt ", adpcm), (b"fact", struct.pack("<I", 16_000)), (b"data", bytes(8_000))]
    )
    assert probe(with_fact)[0].duration_s == pytest.approx(2.0)
    no_fact, _ = probe(_riff([(b"fmt ", adpcm), (b"data", bytes(8_110))]))
    assert not no_fact.exact and no_fact.duration_s == pytest.approx(2.0)


def test_repository_fixtures() -> None:
    short, _ = probe((FIXTURES / "audio" / "short-0.3s.wav").read_bytes())
    assert short.duration_s == pytest.approx(0.3, abs=1e-3)
    long, _ = probe((SAMPLES / "ko-violence-long-16k.wav").read_bytes())
    assert long.duration_s == pytest.approx(25.0, abs=0.5)


def test_flac_behind_an_id3_tag() -> None:
    flac = encode("flac", "flac", seconds=2.0, rate=16_000)
    tag = b"ID3\x04\x00\x00" + bytes([0, 0, 0x08, 0x00]) + bytes(1024)  # 1024-byte tag
    result, _ = probe(tag + flac)
    assert result.format == "flac" and result.duration_s == pytest.approx(2.0)


def _ogg_page(packet: bytes, granule: int, serial: int = 7, header_type: int = 0) -> bytes:
    lacing = [255] * (len(packet) // 255) + [len(packet) % 255]
    return (
        b"OggS"
        + bytes([0, header_type])
        + struct.pack("<QIII", granule, serial, 0, 0)
        + bytes([len(lacing)])
        + bytes(lacing)
        + packet
    )


def test_ogg_speex_and_multiplexed_streams() -> None:
    speex = (
        b"Speex   "
        + bytes(28)
        + struct.pack("<I", 16_000)
        + bytes(8)
        + struct.pack("<I", 1)
        + bytes(28)
    )
    data = (
        _ogg_page(speex, 0, header_type=2)
        + _ogg_page(b"x" * 100, 32_000)
        + _ogg_page(b"other stream", 999_999, serial=8)  # another stream's later page
        + _ogg_page(b"y" * 10, 0xFFFFFFFFFFFFFFFF)  # a page where no packet ends
    )
    result, _ = probe(data)
    assert result.codec == "speex" and result.duration_s == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", ReasonCode.EMPTY_AUDIO),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), ReasonCode.UNSUPPORTED_FORMAT),
        (b'{"transcript": "hello"}', ReasonCode.UNSUPPORTED_FORMAT),
        (b"hello world\n" * 100, ReasonCode.UNSUPPORTED_FORMAT),
        (b"PK\x03\x04" + bytes(200), ReasonCode.UNSUPPORTED_FORMAT),
        (b"\xff\xf1\x50\x80" + bytes(400), ReasonCode.UNSUPPORTED_FORMAT),  # ADTS AAC
    ],
    ids=["empty", "png", "json", "text", "zip", "adts"],
)
def test_not_audio_is_refused(data: bytes, code: ReasonCode) -> None:
    with pytest.raises(AudioError) as err:
        probe(data)
    assert err.value.code is code


@pytest.mark.parametrize(
    "data",
    [
        b"RIFF\0\0\0\0WAVE",
        b"RIFF\0\0\0\0WAVEfmt \x02\0\0\0\x01\0data\x10\0\0\0" + bytes(16),
        b"RIFF\0\0\0\0WAVEdata\x10\0\0\0" + bytes(16),
        b"fLaC\x00\x00\x00\x22" + bytes(34),
        b"fLaC\x81\x00\x00\x10",
        b"\0\0\0\x18ftypM4A \0\0\0\0" + bytes(8) + b"\0\0\0\0moov",
        b"\0\0\0\x18ftypisom" + bytes(12) + b"\0\0\0\x01mdat" + bytes(8),
        b"\0\0\0\x08ftyp" + b"\0\0\0\x04free" * 10,
        b"OggS\0\x02" + bytes(21) + b"\x01\x1eunknown codec packet......",
        b"\x1a\x45\xdf\xa3\x80\x18\x53\x80\x67\xff",
    ],
    ids=[
        "riff-only",
        "fmt-too-small",
        "no-fmt",
        "flac-no-samples",
        "flac-wrong-block",
        "mp4-moov-empty",
        "mp4-huge-mdat",
        "mp4-tiny-boxes",
        "ogg-unknown",
        "ebml-truncated",
    ],
)
def test_broken_headers_give_an_unknown_duration(data: bytes) -> None:
    result, requests = probe(data)
    assert result.duration_s is None and result.detail
    assert requests <= MAX_REQUESTS


def test_reads_are_bounded_by_a_budget() -> None:
    """A WAV whose data chunk hides behind hundreds of 70 KiB chunks: the probe gives up."""
    chunks = [(b"junk", bytes(70_000))] * 200 + [(b"fmt ", _fmt()), (b"data", bytes(32_000))]
    result, requests = probe(_riff(chunks))
    assert result.duration_s is None and requests <= MAX_REQUESTS


MAGICS = [
    b"",
    b"RIFF\x10\0\0\0WAVE",
    b"RF64\xff\xff\xff\xffWAVE",
    b"fLaC",
    b"OggS",
    b"ID3\x04\0\0",
    b"\xff\xfb",
    b"#!AMR\n",
    b"#!AMR-WB\n",
    b"\0\0\0\x14ftyp",
    b"\x1a\x45\xdf\xa3",
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    magic=st.sampled_from(MAGICS),
    tail=st.binary(max_size=3000),
    max_seconds=st.sampled_from([None, 600.0]),
)
def test_arbitrary_bytes_never_crash_and_stay_bounded(
    magic: bytes, tail: bytes, max_seconds: float | None
) -> None:
    reader = BytesReader(magic + tail)
    try:
        result = probe_audio(reader, max_seconds=max_seconds)
    except AudioError as exc:
        assert exc.code in (ReasonCode.EMPTY_AUDIO, ReasonCode.UNSUPPORTED_FORMAT)
    else:
        assert result.duration_s is None or result.duration_s >= 0
        assert result.duration_s is None or result.duration_s < float("inf")
    assert reader.requests <= MAX_REQUESTS
