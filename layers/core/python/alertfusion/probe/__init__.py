"""Audio duration from container headers, read through a few ranged GETs (pure Python).

The starter must refuse recordings Transcribe cannot take (shorter than 0.5 s, longer than
the configured maximum) without downloading them. The container is sniffed by
`alertfusion.sniff` (the sniffer decoding uses too), then only headers are read:

* WAV / RF64 / BW64 / RIFX: ``fmt `` + ``data`` (or ``ds64``) chunks; lying or streaming
  sizes are clamped to the object size (`probe.wav`);
* FLAC: STREAMINFO total samples (an ID3v2 tag in front is skipped) (`probe.flac`);
* Ogg (Vorbis, Opus, FLAC, Speex): the last page's granule position (`probe.ogg`);
* MP3: Xing/Info or VBRI frame counts, else a CBR estimate from the bit rate (`probe.mp3`);
* MP4 / M4A / 3GP: ``mvhd`` (``moov`` may sit after ``mdat`` at the end of the file)
  (`probe.mp4`);
* raw AMR-NB / AMR-WB: a frame walk (20 ms per frame), stopped once past the maximum
  (`probe.amr`);
* WebM / Matroska: the Segment Info ``Duration`` when there is one (`probe.matroska`).

The result's ``duration_s`` is None when the container carries no duration (MediaRecorder
WebM, fragmented MP4, a header that cannot be read): the classifier's exact check after
decoding decides then. Bytes that are no audio container the asynchronous path takes are
refused (``UNSUPPORTED_FORMAT``); an empty object is ``EMPTY_AUDIO``. Reads are bounded in
number and bytes (`probe.readers`), so a lying header cannot make the probe fetch the whole
object or loop.
"""

from __future__ import annotations

import struct

from alertfusion.errors import AudioError, ReasonCode
from alertfusion.probe.amr import parse_amr
from alertfusion.probe.flac import parse_flac
from alertfusion.probe.matroska import parse_matroska
from alertfusion.probe.mp3 import parse_mp3
from alertfusion.probe.mp4 import parse_mp4
from alertfusion.probe.ogg import parse_ogg
from alertfusion.probe.readers import (
    BLOCK_BYTES,
    MAX_BYTES_READ,
    MAX_REQUESTS,
    BlockCache,
    BudgetExceeded,
    BytesReader,
    ObjectHead,
    RangeReader,
    S3RangeReader,
    read_object_head,
)
from alertfusion.probe.result import TRANSCRIBE_MEDIA_FORMATS, Parser, ProbeResult
from alertfusion.probe.wav import parse_wav
from alertfusion.sniff import sniff

__all__ = [
    "BLOCK_BYTES",
    "MAX_BYTES_READ",
    "MAX_REQUESTS",
    "PARSERS",
    "TRANSCRIBE_MEDIA_FORMATS",
    "BytesReader",
    "ObjectHead",
    "ProbeResult",
    "RangeReader",
    "S3RangeReader",
    "probe_audio",
    "read_object_head",
    "sniff_container",
]

#: sniffed container -> its header parser: every container the asynchronous path takes
PARSERS: dict[str, Parser] = {
    "wav": parse_wav,
    "rf64": parse_wav,
    "rifx": parse_wav,
    "flac": parse_flac,
    "ogg": parse_ogg,
    "mp3": parse_mp3,
    "mp4": parse_mp4,
    "3gp": parse_mp4,
    "amr": parse_amr,
    "webm": parse_matroska,
    "matroska": parse_matroska,
}


def probe_audio(reader: RangeReader, *, max_seconds: float | None = None) -> ProbeResult:
    """Sniff the container and read its duration from headers.

    `max_seconds` lets frame walks (raw AMR) stop early: a returned duration above it is a
    lower bound, enough to refuse the file. Raises AudioError EMPTY_AUDIO for an empty
    object and UNSUPPORTED_FORMAT for bytes that are no audio container the asynchronous
    path takes (not audio, or a container Transcribe does not read: ADTS AAC, AIFF, ...).
    """
    if reader.size <= 0:
        raise AudioError("the object is empty", code=ReasonCode.EMPTY_AUDIO)
    cache = BlockCache(reader)
    try:
        found = sniff(cache.read)
    except BudgetExceeded:
        found = None
    if found is None or not found.container.transcribe:
        raise AudioError(
            "the bytes are not a supported audio container "
            "(WAV, FLAC, Ogg, MP3, MP4/M4A/3GP, AMR, WebM)",
            code=ReasonCode.UNSUPPORTED_FORMAT,
        )
    fmt = found.container.name
    try:
        return PARSERS[fmt](cache, fmt, found.start, max_seconds)
    except BudgetExceeded:
        return ProbeResult(fmt, None, detail="header not found within the read budget")
    except (struct.error, IndexError, ValueError, ZeroDivisionError, OverflowError):
        return ProbeResult(fmt, None, detail="header unreadable")


def sniff_container(head: bytes) -> str | None:
    """The container of a file's first bytes (`alertfusion.sniff`'s name for it), or None.

    Names every container the sniffer knows, including those `probe_audio` refuses.
    """
    try:
        found = sniff(BlockCache(BytesReader(head)).read)
    except BudgetExceeded:
        return None
    return found.container.name if found else None
