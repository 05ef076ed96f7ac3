"""WebM / Matroska duration from the Segment Info ``Duration`` element, when there is one."""

from __future__ import annotations

import struct

from alertfusion.probe.readers import BLOCK_BYTES, MAX_CHUNKS, BlockCache
from alertfusion.probe.result import ProbeResult

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


def parse_matroska(
    cache: BlockCache, kind: str, start: int, max_seconds: float | None
) -> ProbeResult:
    """`kind`: "webm" or "matroska", as sniffed from the EBML DocType."""
    data = cache.read(0, BLOCK_BYTES)
    pos = 0
    _, n, _ = _vint(data, pos, keep_marker=True)
    size, m, _ = _vint(data, pos + n, keep_marker=False)
    pos += n + m + size
    element, n, _ = _vint(data, pos, keep_marker=True)
    if element != _EBML_SEGMENT:
        return ProbeResult(kind, None, detail="no Segment after the EBML header")
    _, m, _ = _vint(data, pos + n, keep_marker=False)
    pos += n + m
    for _ in range(MAX_CHUNKS):
        if pos >= len(data):
            break
        element, n, _ = _vint(data, pos, keep_marker=True)
        size, m, unknown = _vint(data, pos + n, keep_marker=False)
        body = pos + n + m
        if element == _EBML_CLUSTER or unknown:
            break
        if element == _EBML_INFO:
            return _info(kind, data[body : body + size])
        pos = body + size
    return ProbeResult(kind, None, detail="no Segment Info before the first Cluster")


def _info(fmt: str, info: bytes) -> ProbeResult:
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
