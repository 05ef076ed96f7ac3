"""MP4 / M4A / 3GP duration from ``mvhd`` (or ``mehd``); ``moov`` may follow ``mdat``."""

from __future__ import annotations

import struct

from alertfusion.probe.readers import MAX_CHUNKS, BlockCache
from alertfusion.probe.result import ProbeResult


def _boxes(cache: BlockCache, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, payload offset, box end) of the boxes in [start, end), bounded."""
    out = []
    offset = start
    for _ in range(MAX_CHUNKS):
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


def parse_mp4(cache: BlockCache, kind: str, start: int, max_seconds: float | None) -> ProbeResult:
    """`kind`: "mp4" or "3gp", as sniffed from the ``ftyp`` brand."""
    for box, payload, end in _boxes(cache, 0, cache.size):
        if box != b"moov":
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
                return ProbeResult(kind, duration / timescale)
            fragment = _mehd_duration(cache, children)
            if timescale and fragment:
                return ProbeResult(kind, fragment / timescale)
            return ProbeResult(kind, None, detail="mvhd has no duration (fragmented MP4?)")
        return ProbeResult(kind, None, detail="moov has no mvhd")
    return ProbeResult(kind, None, detail="no moov box")


def _mehd_duration(cache: BlockCache, moov_children: list[tuple[bytes, int, int]]) -> int | None:
    for box, payload, end in moov_children:
        if box != b"mvex":
            continue
        for child, child_payload, _ in _boxes(cache, payload, end):
            if child == b"mehd":
                data = cache.read(child_payload, 12)
                if data[0] == 1:
                    return int(struct.unpack(">Q", data[4:12])[0])
                return int(struct.unpack(">I", data[4:8])[0])
    return None
