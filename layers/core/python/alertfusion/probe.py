"""Audio duration from container headers, read through a few ranged GETs (pure Python).

The starter must refuse recordings Transcribe cannot take (shorter than 0.5 s, longer than
the configured maximum) without downloading them. This reads only headers:

* WAV / RF64 / BW64: ``fmt `` + ``data`` (or ``ds64``) chunks; lying or streaming sizes
  are clamped to the object size;
* FLAC: STREAMINFO total samples (an ID3v2 tag in front is skipped);
* Ogg (Vorbis, Opus, FLAC, Speex): the last page's granule position;
* MP3: Xing/Info or VBRI frame counts, else a CBR estimate from the bit rate;
* MP4 / M4A / 3GP: ``mvhd`` (``moov`` may sit after ``mdat`` at the end of the file);
* raw AMR-NB / AMR-WB: a frame walk (20 ms per frame), stopped once past the maximum;
* WebM / Matroska: the Segment Info ``Duration`` when there is one.

The result's ``duration_s`` is None when the container carries no duration (MediaRecorder
WebM, fragmented MP4, a header that cannot be read): the classifier's exact check after
decoding decides then. Bytes that are no known audio container are refused
(``UNSUPPORTED_FORMAT``); an empty object is ``EMPTY_AUDIO``. Reads are bounded in number
and bytes, so a lying header cannot make the probe fetch the whole object or loop.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Protocol

from alertfusion.errors import AudioError, ReasonCode

#: read granularity: one ranged GET fetches at least this much
BLOCK_BYTES = 64 * 1024
MAX_REQUESTS = 12
MAX_BYTES_READ = 4 * 1024 * 1024
_MAX_CHUNKS = 64
_MP3_SYNC_SCAN = 8 * 1024

#: sniffed format -> Transcribe MediaFormat (None: let Transcribe detect it)
TRANSCRIBE_MEDIA_FORMATS: dict[str, str | None] = {
    "wav": "wav",
    "rf64": "wav",
    "flac": "flac",
    "ogg": "ogg",
    "mp3": "mp3",
    "mp4": "mp4",
    "3gp": None,
    "amr": "amr",
    "webm": "webm",
    "matroska": None,
}


class RangeReader(Protocol):
    """Random access to an object of known size (an S3 object through ranged GETs)."""

    @property
    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes at `offset` (fewer at the end of the object)."""
        ...


class BytesReader:
    """A RangeReader over bytes in memory (tests, and callers that hold the file)."""

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)
        self.requests = 0

    @property
    def size(self) -> int:
        return len(self._data)

    def read(self, offset: int, length: int) -> bytes:
        self.requests += 1
        return self._data[offset : offset + length]


@dataclass(frozen=True)
class ObjectHead:
    """What HeadObject would say about an S3 object, plus its first bytes."""

    size: int
    content_type: str | None
    etag: str | None
    head: bytes


def read_object_head(
    client: Any, bucket: str, key: str, *, version_id: str | None = None
) -> ObjectHead:
    """One ranged ``GetObject`` for the first block: size (from ``Content-Range``),
    Content-Type and ETag come with it, so the starter needs no separate HeadObject.
    S3 answers any range on an empty object with 416 InvalidRange: then HeadObject says
    what there is. Other errors (NoSuchKey...) propagate."""
    from botocore.exceptions import ClientError

    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version_id:
        kwargs["VersionId"] = version_id
    try:
        response = client.get_object(Range=f"bytes=0-{BLOCK_BYTES - 1}", **kwargs)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "InvalidRange":
            raise
        head = client.head_object(**kwargs)
        return ObjectHead(
            size=int(head.get("ContentLength") or 0),
            content_type=head.get("ContentType"),
            etag=_etag(head),
            head=b"",
        )
    body = response["Body"]
    try:
        data = bytes(body.read())
    finally:
        body.close()
    content_range = str(response.get("ContentRange") or "")
    total = content_range.rpartition("/")[2]
    size = int(total) if total.isdigit() else int(response.get("ContentLength") or len(data))
    return ObjectHead(size, response.get("ContentType"), _etag(response), data)


def _etag(response: dict[str, Any]) -> str | None:
    return str(response.get("ETag") or "").strip('"') or None


class S3RangeReader:
    """Ranged ``GetObject`` calls on one S3 object version (`prefetched`: its first bytes,
    already read, served without a request)."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        key: str,
        size: int,
        *,
        version_id: str | None = None,
        prefetched: bytes = b"",
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._size = size
        self._version_id = version_id
        self._prefetched = prefetched
        self.requests = 0

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        if length <= 0 or offset >= self._size:
            return b""
        if min(self._size, offset + length) <= len(self._prefetched):
            return self._prefetched[offset : offset + length]
        self.requests += 1
        end = min(self._size, offset + length) - 1
        kwargs: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": self._key,
            "Range": f"bytes={offset}-{end}",
        }
        if self._version_id:
            kwargs["VersionId"] = self._version_id
        body = self._client.get_object(**kwargs)["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()


class _BudgetExceeded(Exception):
    pass


class _Cache:
    """Block cache over a RangeReader with a hard budget of requests and bytes."""

    def __init__(self, reader: RangeReader) -> None:
        self._reader = reader
        self.size = reader.size
        self._spans: list[tuple[int, bytes]] = []
        self.requests = 0
        self.bytes_read = 0

    def read(self, offset: int, length: int, *, block: int = BLOCK_BYTES) -> bytes:
        """Exactly the bytes in [offset, offset+length) clipped to the object."""
        if offset < 0 or length <= 0 or offset >= self.size:
            return b""
        end = min(self.size, offset + length)
        for start, data in self._spans:
            if start <= offset and end <= start + len(data):
                return data[offset - start : end - start]
        fetch = max(end - offset, block)
        if self.requests >= MAX_REQUESTS or self.bytes_read + fetch > MAX_BYTES_READ:
            raise _BudgetExceeded
        data = self._reader.read(offset, fetch)
        self.requests += 1
        self.bytes_read += len(data)
        self._spans.append((offset, data))
        return data[: end - offset]


@dataclass(frozen=True)
class ProbeResult:
    format: str
    #: seconds, or None when the container does not say (the decoder decides later)
    duration_s: float | None
    #: False for estimates (CBR MP3 without a frame-count header)
    exact: bool = True
    codec: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    #: why the duration is unknown, in words
    detail: str | None = None

    @property
    def transcribe_media_format(self) -> str | None:
        return TRANSCRIBE_MEDIA_FORMATS.get(self.format)


def probe_audio(reader: RangeReader, *, max_seconds: float | None = None) -> ProbeResult:
    """Sniff the container and read its duration from headers.

    `max_seconds` lets frame walks (raw AMR) stop early: a returned duration above it is a
    lower bound, enough to refuse the file. Raises AudioError EMPTY_AUDIO for an empty
    object and UNSUPPORTED_FORMAT for bytes that are no known audio container.
    """
    if reader.size <= 0:
        raise AudioError("the object is empty", code=ReasonCode.EMPTY_AUDIO)
    cache = _Cache(reader)
    try:
        head = cache.read(0, BLOCK_BYTES)
        fmt, start = _sniff(cache, head)
    except _BudgetExceeded:
        fmt, start = None, 0
    if fmt is None:
        raise AudioError(
            "the bytes are not a supported audio container "
            "(WAV, FLAC, Ogg, MP3, MP4/M4A/3GP, AMR, WebM)",
            code=ReasonCode.UNSUPPORTED_FORMAT,
        )
    parser = _PARSERS[fmt]
    try:
        return parser(cache, start, max_seconds)
    except _BudgetExceeded:
        return ProbeResult(fmt, None, detail="header not found within the read budget")
    except (struct.error, IndexError, ValueError, ZeroDivisionError, OverflowError):
        return ProbeResult(fmt, None, detail="header unreadable")


def sniff_container(head: bytes) -> str | None:
    """The container format of the first bytes of a file, by magic numbers only."""
    try:
        fmt, _ = _sniff(_Cache(BytesReader(head)), head)
    except _BudgetExceeded:
        return None
    return fmt


# --- sniffing ------------------------------------------------------------------------------


def _id3v2_end(cache: _Cache, offset: int) -> int:
    """Offset after any ID3v2 tags starting at `offset`."""
    for _ in range(4):
        tag = cache.read(offset, 10)
        if len(tag) < 10 or tag[:3] != b"ID3" or any(b & 0x80 for b in tag[6:10]):
            return offset
        size = (tag[6] << 21) | (tag[7] << 14) | (tag[8] << 7) | tag[9]
        offset += 10 + size + (10 if tag[5] & 0x10 else 0)
    return offset


def _sniff(cache: _Cache, head: bytes) -> tuple[str | None, int]:
    if len(head) >= 12 and head[8:12] == b"WAVE":
        if head[:4] == b"RIFF":
            return "wav", 0
        if head[:4] in (b"RF64", b"BW64"):
            return "rf64", 0
    if head[:4] == b"fLaC":
        return "flac", 0
    if head[:4] == b"OggS":
        return "ogg", 0
    if head.startswith(b"#!AMR"):
        return "amr", 0
    if len(head) >= 8 and head[4:8] == b"ftyp":
        return ("3gp" if head[8:10] == b"3g" else "mp4"), 0
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return ("webm" if b"webm" in head[:64] else "matroska"), 0
    start = _id3v2_end(cache, 0)
    if start and cache.read(start, 4) == b"fLaC":
        return "flac", start
    if _find_mp3_frame(cache, start, require_second=True) is not None:
        return "mp3", start
    return None, 0


# --- WAV / RF64 --------------------------------------------------------------------------

_PCM_LIKE = {1, 3, 6, 7}  # PCM, IEEE float, A-law, mu-law: frames = bytes / block_align


def _parse_wav(cache: _Cache, start: int, max_seconds: float | None) -> ProbeResult:
    rf64 = cache.read(0, 4) in (b"RF64", b"BW64")
    fmt_info: tuple[int, int, int, int, int, int] | None = None
    fact_samples: int | None = None
    ds64_data: int | None = None
    offset = 12
    for _ in range(_MAX_CHUNKS):
        header = cache.read(offset, 8)
        if len(header) < 8:
            break
        chunk_id, chunk_size = header[:4], struct.unpack("<I", header[4:])[0]
        body = offset + 8
        if chunk_id == b"ds64" and rf64:
            ds64_data = struct.unpack("<Q", cache.read(body + 8, 8))[0]
        elif chunk_id == b"fmt ":
            raw = cache.read(body, min(chunk_size, 40))
            tag, channels, rate, byte_rate, align = struct.unpack("<HHIIH", raw[:14])
            bits = struct.unpack("<H", raw[14:16])[0] if len(raw) >= 16 else 0
            if tag == 0xFFFE and len(raw) >= 26:  # WAVE_FORMAT_EXTENSIBLE: real tag in GUID
                tag = struct.unpack("<H", raw[24:26])[0]
            fmt_info = (tag, channels, rate, byte_rate, align, bits)
        elif chunk_id == b"fact" and chunk_size >= 4:
            fact_samples = struct.unpack("<I", cache.read(body, 4))[0]
        elif chunk_id == b"data":
            available = max(0, cache.size - body)
            size = chunk_size
            if rf64 and chunk_size == 0xFFFFFFFF and ds64_data is not None:
                size = ds64_data
            if size in (0, 0xFFFFFFFF) or size > available:
                size = available  # streaming writers and truncated files: what is there
            return _wav_result("rf64" if rf64 else "wav", fmt_info, fact_samples, size)
        if chunk_size == 0xFFFFFFFF:
            break
        offset = body + chunk_size + (chunk_size & 1)
    return ProbeResult("rf64" if rf64 else "wav", None, detail="no data chunk in the header")


def _wav_result(
    fmt: str,
    info: tuple[int, int, int, int, int, int] | None,
    fact_samples: int | None,
    data_bytes: int,
) -> ProbeResult:
    if info is None:
        return ProbeResult(fmt, None, detail="no fmt chunk before the data")
    tag, channels, rate, byte_rate, align, bits = info
    if rate <= 0 or channels <= 0:
        return ProbeResult(fmt, None, detail="fmt chunk has no sample rate or channels")
    if tag in _PCM_LIKE:
        frame = align or channels * max(1, bits // 8)
        return ProbeResult(
            fmt, (data_bytes // frame) / rate, codec="pcm", sample_rate=rate, channels=channels
        )
    if fact_samples:
        return ProbeResult(fmt, fact_samples / rate, sample_rate=rate, channels=channels)
    if byte_rate > 0:
        return ProbeResult(
            fmt, data_bytes / byte_rate, exact=False, sample_rate=rate, channels=channels
        )
    return ProbeResult(fmt, None, detail="compressed WAV without fact chunk or byte rate")


# --- FLAC --------------------------------------------------------------------------------


def _streaminfo(block: bytes) -> tuple[int, int, int]:
    """(sample rate, channels, total samples) of a 34-byte FLAC STREAMINFO block."""
    packed = int.from_bytes(block[10:18], "big")
    rate = packed >> 44
    channels = ((packed >> 41) & 0x7) + 1
    total = packed & ((1 << 36) - 1)
    return rate, channels, total


def _parse_flac(cache: _Cache, start: int, max_seconds: float | None) -> ProbeResult:
    header = cache.read(start + 4, 4)
    if len(header) < 4 or header[0] & 0x7F != 0:
        return ProbeResult("flac", None, detail="STREAMINFO is not the first block")
    rate, channels, total = _streaminfo(cache.read(start + 8, 34))
    if rate == 0 or total == 0:
        return ProbeResult("flac", None, detail="STREAMINFO has no sample count")
    return ProbeResult("flac", total / rate, codec="flac", sample_rate=rate, channels=channels)


# --- Ogg ---------------------------------------------------------------------------------

_GRANULE_UNSET = 0xFFFFFFFFFFFFFFFF


def _parse_ogg(cache: _Cache, start: int, max_seconds: float | None) -> ProbeResult:
    page = cache.read(0, 27)
    serial = struct.unpack("<I", page[14:18])[0]
    nsegs = page[26]
    lacing = cache.read(27, nsegs)
    packet = cache.read(27 + nsegs, min(sum(lacing), 128))
    codec: str
    pre_skip = 0
    if packet.startswith(b"\x01vorbis"):
        codec, channels = "vorbis", packet[11]
        rate = struct.unpack("<I", packet[12:16])[0]
    elif packet.startswith(b"OpusHead"):
        codec, channels, rate = "opus", packet[9], 48_000  # Opus granules are 48 kHz
        pre_skip = struct.unpack("<H", packet[10:12])[0]
    elif packet.startswith(b"\x7fFLAC") and packet[9:13] == b"fLaC":
        codec = "flac"
        rate, channels, _ = _streaminfo(packet[17:51])
    elif packet.startswith(b"Speex   "):
        codec, channels = "speex", struct.unpack("<I", packet[48:52])[0]
        rate = struct.unpack("<I", packet[36:40])[0]
    else:
        return ProbeResult("ogg", None, detail="unknown Ogg codec")
    if rate <= 0:
        return ProbeResult("ogg", None, codec=codec, detail="no sample rate")
    granule = _last_granule(cache, serial)
    if granule is None:
        return ProbeResult("ogg", None, codec=codec, detail="no final granule position")
    samples = max(0, granule - pre_skip)
    return ProbeResult("ogg", samples / rate, codec=codec, sample_rate=rate, channels=channels)


def _last_granule(cache: _Cache, serial: int) -> int | None:
    for tail_bytes in (BLOCK_BYTES, 4 * BLOCK_BYTES):
        tail_start = max(0, cache.size - tail_bytes)
        tail = cache.read(tail_start, cache.size - tail_start, block=tail_bytes)
        pos = len(tail)
        while True:
            pos = tail.rfind(b"OggS", 0, pos)
            if pos < 0 or pos + 27 > len(tail):
                if pos < 0:
                    break
                continue
            version = tail[pos + 4]
            granule, page_serial = struct.unpack("<QI", tail[pos + 6 : pos + 18])
            if version == 0 and page_serial == serial and granule != _GRANULE_UNSET:
                return granule
        if tail_start == 0:
            return None
    return None


# --- MP3 ---------------------------------------------------------------------------------

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


def _find_mp3_frame(cache: _Cache, start: int, *, require_second: bool) -> Mp3Frame | None:
    window = cache.read(start, _MP3_SYNC_SCAN)
    pos = window.find(b"\xff")
    while 0 <= pos < len(window) - 3:
        frame = mp3_header(window[pos : pos + 4], start + pos)
        if frame is not None and frame.length > 0:
            after = frame.offset + frame.length
            if after >= cache.size:
                return frame if not require_second or frame.offset == start else None
            nxt = mp3_header(cache.read(after, 4), after)
            if (
                nxt is not None
                and nxt.version == frame.version
                and nxt.layer == frame.layer
                and nxt.sample_rate == frame.sample_rate
            ):
                return frame
        pos = window.find(b"\xff", pos + 1)
    return None


def _parse_mp3(cache: _Cache, start: int, max_seconds: float | None) -> ProbeResult:
    frame = _find_mp3_frame(cache, start, require_second=False)
    if frame is None:
        return ProbeResult("mp3", None, detail="no MPEG audio frame found")
    channels = 1 if frame.mono else 2
    body = cache.read(frame.offset, min(frame.length or 4096, 4096))
    if frame.mpeg1:
        side = 17 if frame.mono else 32
    else:
        side = 9 if frame.mono else 17
    xing = body[4 + side : 4 + side + 12]
    if xing[:4] in (b"Xing", b"Info"):
        flags = struct.unpack(">I", xing[4:8])[0]
        if flags & 1:
            frames = struct.unpack(">I", xing[8:12])[0]
            return ProbeResult(
                "mp3",
                frames * frame.samples / frame.sample_rate,
                codec="mp3",
                sample_rate=frame.sample_rate,
                channels=channels,
            )
    vbri = body[36:54]
    if vbri[:4] == b"VBRI":
        frames = struct.unpack(">I", vbri[14:18])[0]
        return ProbeResult(
            "mp3",
            frames * frame.samples / frame.sample_rate,
            codec="mp3",
            sample_rate=frame.sample_rate,
            channels=channels,
        )
    if frame.bitrate == 0:
        return ProbeResult("mp3", None, detail="free-format MP3 without a frame count")
    audio_bytes = cache.size - frame.offset
    return ProbeResult(
        "mp3",
        audio_bytes * 8 / frame.bitrate,
        exact=False,
        codec="mp3",
        sample_rate=frame.sample_rate,
        channels=channels,
    )


# --- MP4 / M4A / 3GP ---------------------------------------------------------------------


def _boxes(cache: _Cache, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, payload offset, box end) of the boxes in [start, end), bounded."""
    out = []
    offset = start
    for _ in range(_MAX_CHUNKS):
        if offset + 8 > end:
            break
        header = cache.read(offset, 16)
        size, kind = struct.unpack(">I4s", header[:8])
        payload = offset + 8
        if size == 1:
            size = struct.unpack(">Q", header[8:16])[0]
            payload = offset + 16
        elif size == 0:
            size = end - offset
        if size < payload - offset:
            break  # a box smaller than its own header: stop, do not loop
        out.append((kind, payload, min(end, offset + size)))
        offset += size
    return out


def _parse_mp4(cache: _Cache, start: int, max_seconds: float | None) -> ProbeResult:
    fmt = "3gp" if cache.read(8, 2) == b"3g" else "mp4"
    for kind, payload, end in _boxes(cache, 0, cache.size):
        if kind != b"moov":
            continue
        children = _boxes(cache, payload, end)
        for child, child_payload, _child_end in children:
            if child != b"mvhd":
                continue
            data = cache.read(child_payload, 32)
            if data[0] == 1:
                timescale, duration = struct.unpack(">IQ", data[20:32])
                unset = duration == 0xFFFFFFFFFFFFFFFF
            else:
                timescale, duration = struct.unpack(">II", data[12:20])
                unset = duration == 0xFFFFFFFF
            if timescale and duration and not unset:
                return ProbeResult(fmt, duration / timescale)
            fragment = _mehd_duration(cache, children)
            if timescale and fragment:
                return ProbeResult(fmt, fragment / timescale)
            return ProbeResult(fmt, None, detail="mvhd has no duration (fragmented MP4?)")
        return ProbeResult(fmt, None, detail="moov has no mvhd")
    return ProbeResult(fmt, None, detail="no moov box")


def _mehd_duration(cache: _Cache, moov_children: list[tuple[bytes, int, int]]) -> int | None:
    for kind, payload, end in moov_children:
        if kind != b"mvex":
            continue
        for child, child_payload, _ in _boxes(cache, payload, end):
            if child == b"mehd":
                data = cache.read(child_payload, 12)
                if data[0] == 1:
                    return int(struct.unpack(">Q", data[4:12])[0])
                return int(struct.unpack(">I", data[4:8])[0])
    return None


# --- AMR ---------------------------------------------------------------------------------

# bytes per frame including the TOC byte, by frame type (None: reserved -> corrupt)
_AMR_NB: tuple[int | None, ...] = (
    13,
    14,
    16,
    18,
    20,
    21,
    27,
    32,
    6,
    None,
    None,
    None,
    None,
    None,
    None,
    1,
)
_AMR_WB: tuple[int | None, ...] = (
    18,
    24,
    33,
    37,
    41,
    47,
    51,
    59,
    61,
    6,
    None,
    None,
    None,
    None,
    1,
    1,
)
_AMR_FRAME_S = 0.02
_AMR_BLOCK = 512 * 1024


def _parse_amr(cache: _Cache, start: int, max_seconds: float | None) -> ProbeResult:
    head = cache.read(0, 16)
    if head.startswith(b"#!AMR-WB\n"):
        table, offset, rate = _AMR_WB, 9, 16_000
    elif head.startswith(b"#!AMR\n"):
        table, offset, rate = _AMR_NB, 6, 8_000
    else:
        return ProbeResult("amr", None, detail="multichannel AMR is not probed")
    max_frames = None if max_seconds is None else int(max_seconds / _AMR_FRAME_S) + 1
    frames = 0
    block_start, block = offset, b""
    while offset < cache.size:
        if offset >= block_start + len(block):
            block_start = offset
            # the head is cached already: short recordings need no second read
            length = BLOCK_BYTES - offset if offset < BLOCK_BYTES else _AMR_BLOCK
            block = cache.read(offset, length, block=_AMR_BLOCK)
            if not block:
                break
        size = table[(block[offset - block_start] >> 3) & 0x0F]
        if size is None:
            return ProbeResult("amr", None, codec="amr", detail="reserved AMR frame type")
        offset += size
        frames += 1
        if max_frames is not None and frames > max_frames:
            break  # already past the maximum: the exact length does not matter
    return ProbeResult("amr", frames * _AMR_FRAME_S, codec="amr", sample_rate=rate, channels=1)


# --- WebM / Matroska ---------------------------------------------------------------------

_EBML_SEGMENT = 0x18538067
_EBML_INFO = 0x1549A966
_EBML_CLUSTER = 0x1F43B675
_EBML_TIMESCALE = 0x2AD7B1
_EBML_DURATION = 0x4489


def _vint(data: bytes, pos: int, *, keep_marker: bool) -> tuple[int, int, bool]:
    """(value, length, all-ones) of the EBML variable-size integer at `pos`."""
    first = data[pos]
    length = 1
    mask = 0x80
    while length <= 8 and not first & mask:
        mask >>= 1
        length += 1
    if length > 8:
        raise ValueError("invalid EBML vint")
    value = first if keep_marker else first & (mask - 1)
    for b in data[pos + 1 : pos + length]:
        value = (value << 8) | b
    if pos + length > len(data):
        raise IndexError("truncated EBML vint")
    payload_bits = 7 * length
    all_ones = not keep_marker and value == (1 << payload_bits) - 1
    return value, length, all_ones


def _parse_webm(cache: _Cache, start: int, max_seconds: float | None) -> ProbeResult:
    data = cache.read(0, BLOCK_BYTES)
    fmt = "webm" if b"webm" in data[:64] else "matroska"
    pos = 0
    _, n, _ = _vint(data, pos, keep_marker=True)
    size, m, _ = _vint(data, pos + n, keep_marker=False)
    pos += n + m + size
    element, n, _ = _vint(data, pos, keep_marker=True)
    if element != _EBML_SEGMENT:
        return ProbeResult(fmt, None, detail="no Segment after the EBML header")
    _, m, _ = _vint(data, pos + n, keep_marker=False)
    pos += n + m
    for _ in range(_MAX_CHUNKS):
        if pos >= len(data):
            break
        element, n, _ = _vint(data, pos, keep_marker=True)
        size, m, unknown = _vint(data, pos + n, keep_marker=False)
        body = pos + n + m
        if element == _EBML_CLUSTER or unknown:
            break
        if element == _EBML_INFO:
            return _webm_info(fmt, data[body : body + size])
        pos = body + size
    return ProbeResult(fmt, None, detail="no Segment Info before the first Cluster")


def _webm_info(fmt: str, info: bytes) -> ProbeResult:
    scale = 1_000_000
    duration: float | None = None
    pos = 0
    while pos < len(info):
        element, n, _ = _vint(info, pos, keep_marker=True)
        size, m, _ = _vint(info, pos + n, keep_marker=False)
        value = info[pos + n + m : pos + n + m + size]
        if element == _EBML_TIMESCALE and 0 < size <= 8:
            scale = int.from_bytes(value, "big")
        elif element == _EBML_DURATION and size in (4, 8):
            duration = struct.unpack(">f" if size == 4 else ">d", value)[0]
        pos += n + m + size
    if duration is None or not duration > 0 or duration == float("inf"):
        return ProbeResult(fmt, None, detail="no Duration in Segment Info (MediaRecorder?)")
    return ProbeResult(fmt, duration * scale / 1e9)


_PARSERS = {
    "wav": _parse_wav,
    "rf64": _parse_wav,
    "flac": _parse_flac,
    "ogg": _parse_ogg,
    "mp3": _parse_mp3,
    "mp4": _parse_mp4,
    "3gp": _parse_mp4,
    "amr": _parse_amr,
    "webm": _parse_webm,
    "matroska": _parse_webm,
}
