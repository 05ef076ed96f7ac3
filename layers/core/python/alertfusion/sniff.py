"""The one audio sniffer (magic numbers, ID3v2 skip, MPEG/ADTS frames) and its format table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

#: bytes of a stream's start the magic numbers and the frame scan look at
SNIFF_BYTES = 4096
#: MPEG audio / ADTS frame headers are looked for at this many offsets from the start
_MPEG_SCAN = 2048
#: ID3v2 tags in a row that are skipped (one is usual; an appended tag makes two)
_MAX_ID3_TAGS = 4

#: `read(offset, length)`: up to `length` bytes at `offset` (fewer at the end)
Read = Callable[[int, int], bytes]


@dataclass(frozen=True)
class Container:
    """A sniffed container or stream format, and what each caller does with it."""

    #: the one vocabulary: the sniffer, the probe (`ProbeResult.format`) and job records
    name: str
    #: `DecodedAudio.format` and `alertfusion.audio.sniff_format` (the /predict vocabulary)
    decoded_as: str
    #: libsndfile reads it: the decoder's first choice
    soundfile: bool
    #: the FFmpeg demuxer PyAV opens it with; None: FFmpeg must not decode it
    demuxer: str | None
    #: the asynchronous path takes it: Transcribe reads it and the probe parses its header
    transcribe: bool
    #: Transcribe's MediaFormat (None: the request leaves it out and Transcribe detects it)
    media_format: str | None = None


#: every container the service recognises, by name
CONTAINERS: dict[str, Container] = {
    c.name: c
    for c in (
        Container("wav", "wav", True, "wav", True, "wav"),
        Container("rf64", "wav", True, "wav", True, "wav"),
        # big-endian WAV: FFmpeg's wav demuxer decodes its PCM as little-endian (noise)
        Container("rifx", "wav", True, None, True, "wav"),
        Container("w64", "w64", True, "w64", False),
        Container("flac", "flac", True, "flac", True, "flac"),
        Container("ogg", "ogg", True, "ogg", True, "ogg"),
        Container("mp3", "mp3", True, "mp3", True, "mp3"),
        Container("aac", "aac", False, "aac", False),
        Container("mp4", "m4a", False, "mp4", True, "mp4"),
        Container("3gp", "3gp", False, "mp4", True),
        Container("amr", "amr", False, "amr", True, "amr"),
        Container("webm", "webm", False, "matroska", True, "webm"),
        Container("matroska", "mkv", False, "matroska", True),
        Container("aiff", "aiff", True, "aiff", False),
        Container("au", "au", True, "au", False),
        Container("caf", "caf", True, "caf", False),
    )
}

_W64_RIFF = b"riff\x2e\x91\xcf\x11\xa5\xd6\x28\xdb\x04\xc1\x00\x00"
_EBML = b"\x1a\x45\xdf\xa3"
#: the EBML DocType element (0x4282, 4 bytes) saying "webm"; generic Matroska otherwise
_WEBM_DOCTYPE = b"\x42\x82\x84webm"

#: (container, shortest head, [(offset, accepted bytes), ...] that must all match);
#: the first row that matches wins
_MAGIC: tuple[tuple[str, int, tuple[tuple[int, tuple[bytes, ...]], ...]], ...] = (
    ("wav", 12, ((0, (b"RIFF",)), (8, (b"WAVE",)))),
    ("rf64", 12, ((0, (b"RF64", b"BW64")), (8, (b"WAVE",)))),
    ("rifx", 12, ((0, (b"RIFX",)), (8, (b"WAVE",)))),
    ("w64", 16, ((0, (_W64_RIFF,)),)),
    ("flac", 4, ((0, (b"fLaC",)),)),
    ("ogg", 4, ((0, (b"OggS",)),)),
    ("amr", 5, ((0, (b"#!AMR",)),)),
    ("matroska", 4, ((0, (_EBML,)),)),
    ("3gp", 12, ((4, (b"ftyp",)), (8, (b"3gp", b"3g2", b"3ge", b"3gs")))),
    ("mp4", 12, ((4, (b"ftyp",)),)),
    ("aiff", 12, ((0, (b"FORM",)), (8, (b"AIFF", b"AIFC")))),
    ("au", 4, ((0, (b".snd",)),)),
    ("caf", 4, ((0, (b"caff",)),)),
)


@dataclass(frozen=True)
class Sniffed:
    container: Container
    #: where the audio stream starts: after any ID3v2 tags, else 0
    start: int = 0


def sniff(read: Read) -> Sniffed | None:
    """The container of an object read through `read`, by magic numbers only, or None.

    The first `SNIFF_BYTES` decide, except behind ID3v2 tags (which can be longer): there
    the `SNIFF_BYTES` after the tags decide between FLAC, ADTS AAC and MP3 (the default).
    """
    head = read(0, SNIFF_BYTES)
    name = _by_magic(head)
    if name is not None:
        return Sniffed(CONTAINERS[name])
    if head[:3] == b"ID3" and len(head) >= 10:
        start = id3v2_end(read, 0)
        rest = read(start, SNIFF_BYTES)
        name = "flac" if rest[:4] == b"fLaC" else "aac" if _mpeg_stream(rest) == "aac" else "mp3"
        return Sniffed(CONTAINERS[name], start)
    name = _mpeg_stream(head)
    return Sniffed(CONTAINERS[name]) if name is not None else None


def sniff_bytes(data: bytes) -> Sniffed | None:
    """`sniff` over bytes in memory."""
    return sniff(lambda offset, length: data[offset : offset + length])


def _by_magic(head: bytes) -> str | None:
    for name, shortest, tests in _MAGIC:
        if len(head) >= shortest and all(
            any(head.startswith(value, offset) for value in values) for offset, values in tests
        ):
            if name == "matroska" and _WEBM_DOCTYPE in head[:64]:
                return "webm"
            return name
    return None


def id3v2_end(read: Read, offset: int = 0) -> int:
    """The offset after the ID3v2 tags that start at `offset` (itself if there is none).

    Sizes are syncsafe (7 bits a byte); a set top bit is masked off, as libsndfile does.
    """
    for _ in range(_MAX_ID3_TAGS):
        tag = read(offset, 10)
        if len(tag) < 10 or tag[:3] != b"ID3":
            break
        size = (tag[6] & 0x7F) << 21 | (tag[7] & 0x7F) << 14 | (tag[8] & 0x7F) << 7 | tag[9] & 0x7F
        offset += 10 + size + (10 if tag[5] & 0x10 else 0)  # flag 0x10: a footer follows
    return offset


# --- MPEG audio and ADTS frames --------------------------------------------------------------

_BITRATES = {  # kbit/s by (MPEG-1?, layer) and bitrate index 1..14
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_SAMPLE_RATES = {
    3: (44_100, 48_000, 32_000),
    2: (22_050, 24_000, 16_000),
    0: (11_025, 12_000, 8_000),
}
_ADTS_RATES = 13  # sampling-frequency indexes 0..12 are defined


@dataclass(frozen=True)
class Mp3Frame:
    offset: int
    mpeg1: bool
    version: int
    layer: int
    bitrate: int  # bit/s, 0 for free format
    sample_rate: int
    mono: bool
    length: int  # bytes, 0 for free format

    @property
    def samples(self) -> int:
        if self.layer == 1:
            return 384
        if self.layer == 2 or self.mpeg1:
            return 1152
        return 576


def mp3_header(data: bytes, offset: int) -> Mp3Frame | None:
    """The MPEG audio frame whose 4-byte header is `data` (found at `offset`), or None."""
    if len(data) < 4 or data[0] != 0xFF or data[1] & 0xE0 != 0xE0:
        return None
    version = (data[1] >> 3) & 3
    layer = 4 - ((data[1] >> 1) & 3)
    br_index = data[2] >> 4
    sr_index = (data[2] >> 2) & 3
    if version == 1 or layer == 4 or br_index == 15 or sr_index == 3:
        return None
    mpeg1 = version == 3
    rate = _SAMPLE_RATES[version][sr_index]
    bitrate = 0 if br_index == 0 else _BITRATES[(mpeg1, layer)][br_index - 1] * 1000
    padding = (data[2] >> 1) & 1
    if bitrate == 0:
        length = 0
    elif layer == 1:
        length = (12 * bitrate // rate + padding) * 4
    elif layer == 3 and not mpeg1:
        length = 72 * bitrate // rate + padding
    else:
        length = 144 * bitrate // rate + padding
    return Mp3Frame(offset, mpeg1, version, layer, bitrate, rate, data[3] >> 6 == 3, length)


def _mpeg_frame(h: bytes, i: int) -> tuple[str, int] | None:
    """("mp3" | "aac", frame length) of an MPEG audio or ADTS frame header at h[i], or None."""
    if i + 7 > len(h) or h[i] != 0xFF or h[i + 1] & 0xE0 != 0xE0:
        return None
    b1, b2 = h[i + 1], h[i + 2]
    if b1 & 0xF6 == 0xF0:  # ADTS: 12-bit sync, layer 00
        if (b2 >> 2) & 0x0F >= _ADTS_RATES:
            return None
        length = (h[i + 3] & 0x03) << 11 | h[i + 4] << 3 | h[i + 5] >> 5
        return ("aac", length) if length >= 7 else None
    frame = mp3_header(h[i : i + 4], i)
    if frame is None or frame.length == 0:  # free format (no bitrate) is not sniffed
        return None
    return "mp3", frame.length


def _mpeg_stream(h: bytes) -> str | None:
    """MPEG audio ("mp3") or ADTS ("aac") without a tag: a frame header whose successor is
    where its length says (random bytes almost never chain), past a little leading junk."""
    for i in range(min(len(h), _MPEG_SCAN)):
        first = _mpeg_frame(h, i)
        if first is None:
            continue
        kind, length = first
        following = i + length
        if following + 7 > len(h):
            # the head ends inside this frame: one header at the very start will do
            if i == 0:
                return kind
            continue
        second = _mpeg_frame(h, following)
        if second is not None and second[0] == kind:
            return kind
    return None
