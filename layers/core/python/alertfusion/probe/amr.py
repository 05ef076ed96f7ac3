"""Raw AMR-NB / AMR-WB duration from a frame walk (20 ms a frame), stopped past the maximum."""

from __future__ import annotations

from alertfusion.probe.readers import BLOCK_BYTES, BlockCache
from alertfusion.probe.result import ProbeResult

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


def parse_amr(cache: BlockCache, kind: str, start: int, max_seconds: float | None) -> ProbeResult:
    """`max_seconds`: the walk stops once past it (the result is then a lower bound)."""
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
