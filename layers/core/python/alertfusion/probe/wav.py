"""WAV, RF64/BW64 and RIFX (big-endian WAV) durations from the ``fmt `` and ``data`` chunks."""

from __future__ import annotations

import struct

from alertfusion.probe.readers import MAX_CHUNKS, BlockCache
from alertfusion.probe.result import ProbeResult

_PCM_LIKE = {1, 3, 6, 7}  # PCM, IEEE float, A-law, mu-law: frames = bytes / block_align
_IEEE_FLOAT = 3


def parse_wav(cache: BlockCache, kind: str, start: int, max_seconds: float | None) -> ProbeResult:
    """Lying or streaming ``data`` sizes are clamped to what the object holds."""
    rf64 = kind == "rf64"
    order = ">" if kind == "rifx" else "<"  # RIFX: every field is big-endian
    fmt_info: tuple[int, int, int, int, int, int] | None = None
    fact_samples: int | None = None
    ds64_data: int | None = None
    offset = 12
    for _ in range(MAX_CHUNKS):
        header = cache.read(offset, 8)
        if len(header) < 8:
            break
        chunk_id, chunk_size = header[:4], struct.unpack(order + "I", header[4:])[0]
        body = offset + 8
        if chunk_id == b"ds64" and rf64:
            ds64_data = struct.unpack("<Q", cache.read(body + 8, 8))[0]
        elif chunk_id == b"fmt ":
            raw = cache.read(body, min(chunk_size, 40))
            tag, channels, rate, byte_rate, align = struct.unpack(order + "HHIIH", raw[:14])
            bits = struct.unpack(order + "H", raw[14:16])[0] if len(raw) >= 16 else 0
            if tag == 0xFFFE and len(raw) >= 26:  # WAVE_FORMAT_EXTENSIBLE: real tag in GUID
                tag = struct.unpack(order + "H", raw[24:26])[0]
            fmt_info = (tag, channels, rate, byte_rate, align, bits)
        elif chunk_id == b"fact" and chunk_size >= 4:
            fact_samples = struct.unpack(order + "I", cache.read(body, 4))[0]
        elif chunk_id == b"data":
            available = max(0, cache.size - body)
            size = chunk_size
            if rf64 and chunk_size == 0xFFFFFFFF and ds64_data is not None:
                size = ds64_data
            if size in (0, 0xFFFFFFFF) or size > available:
                size = available  # streaming writers and truncated files: what is there
            return _wav_result(kind, fmt_info, fact_samples, size)
        if chunk_size == 0xFFFFFFFF:
            break
        offset = body + chunk_size + (chunk_size & 1)
    return ProbeResult(kind, None, detail="no data chunk in the header")


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
        # float samples may be NaN or out of range: only decoding can tell (NOT_FINITE)
        codec = "pcm_float" if tag == _IEEE_FLOAT else "pcm"
        return ProbeResult(
            fmt, (data_bytes // frame) / rate, codec=codec, sample_rate=rate, channels=channels
        )
    if fact_samples:
        return ProbeResult(fmt, fact_samples / rate, sample_rate=rate, channels=channels)
    if byte_rate > 0:
        return ProbeResult(
            fmt, data_bytes / byte_rate, exact=False, sample_rate=rate, channels=channels
        )
    return ProbeResult(fmt, None, detail="compressed WAV without fact chunk or byte rate")
