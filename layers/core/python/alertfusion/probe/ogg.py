"""Ogg (Vorbis, Opus, FLAC, Speex) duration from the last page's granule position."""

from __future__ import annotations

import struct

from alertfusion.probe.flac import streaminfo
from alertfusion.probe.readers import BLOCK_BYTES, BlockCache
from alertfusion.probe.result import ProbeResult

_GRANULE_UNSET = 0xFFFFFFFFFFFFFFFF


def parse_ogg(cache: BlockCache, kind: str, start: int, max_seconds: float | None) -> ProbeResult:
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
        rate, channels, _ = streaminfo(packet[17:51])
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


def _last_granule(cache: BlockCache, serial: int) -> int | None:
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
