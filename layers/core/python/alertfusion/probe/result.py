"""What the probe found: container, duration from headers, and the Transcribe MediaFormat."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from alertfusion.probe.readers import BlockCache
from alertfusion.sniff import CONTAINERS

#: probed format -> Transcribe MediaFormat (None: let Transcribe detect it); the formats the
#: asynchronous path takes, from the one container table
TRANSCRIBE_MEDIA_FORMATS: dict[str, str | None] = {
    c.name: c.media_format for c in CONTAINERS.values() if c.transcribe
}


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


#: a container family's header parser: (cache, sniffed format, where the stream starts,
#: the maximum duration a frame walk may stop past) -> result
Parser = Callable[[BlockCache, str, int, float | None], ProbeResult]
