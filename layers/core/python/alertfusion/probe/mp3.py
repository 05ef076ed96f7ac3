"""MP3 duration from a Xing/Info or VBRI frame count, else a CBR estimate from the bit rate."""

from __future__ import annotations

import struct

from alertfusion.probe.readers import BlockCache
from alertfusion.probe.result import ProbeResult
from alertfusion.sniff import Mp3Frame, mp3_header

#: bytes after the stream start searched for the first frame
_MP3_SYNC_SCAN = 8 * 1024


def _first_frame(cache: BlockCache, start: int) -> Mp3Frame | None:
    """The first frame after `start` that the next frame confirms (or that ends the object)."""
    window = cache.read(start, _MP3_SYNC_SCAN)
    pos = window.find(b"\xff")
    while 0 <= pos < len(window) - 3:
        frame = mp3_header(window[pos : pos + 4], start + pos)
        if frame is not None and frame.length > 0:
            after = frame.offset + frame.length
            if after >= cache.size:
                return frame
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


def parse_mp3(cache: BlockCache, kind: str, start: int, max_seconds: float | None) -> ProbeResult:
    """`start`: after any ID3v2 tags."""
    frame = _first_frame(cache, start)
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
