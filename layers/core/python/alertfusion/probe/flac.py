"""FLAC duration from STREAMINFO's total sample count."""

from __future__ import annotations

from alertfusion.probe.readers import BlockCache
from alertfusion.probe.result import ProbeResult


def streaminfo(block: bytes) -> tuple[int, int, int]:
    """(sample rate, channels, total samples) of a 34-byte FLAC STREAMINFO block."""
    packed = int.from_bytes(block[10:18], "big")
    rate = packed >> 44
    channels = ((packed >> 41) & 0x7) + 1
    total = packed & ((1 << 36) - 1)
    return rate, channels, total


def parse_flac(cache: BlockCache, kind: str, start: int, max_seconds: float | None) -> ProbeResult:
    """`start`: after any ID3v2 tags in front of the ``fLaC`` marker."""
    header = cache.read(start + 4, 4)
    if len(header) < 4 or header[0] & 0x7F != 0:
        return ProbeResult("flac", None, detail="STREAMINFO is not the first block")
    rate, channels, total = streaminfo(cache.read(start + 8, 34))
    if rate == 0 or total == 0:
        return ProbeResult("flac", None, detail="STREAMINFO has no sample count")
    return ProbeResult("flac", total / rate, codec="flac", sample_rate=rate, channels=channels)
