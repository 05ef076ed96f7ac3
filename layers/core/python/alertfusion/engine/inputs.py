"""The engine's inputs checked before any work: the transcript, and the audio decoded at the
bundle's rate within the engine's limits."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from alertfusion.errors import AudioError, InputError, ReasonCode, TextError

if TYPE_CHECKING:
    from alertfusion.audio import DecodedAudio


def check_text(text: str | None, max_chars: int) -> tuple[str | None, str | None]:
    """The transcript to tokenize, or None and why there is none. Checked on the calling
    thread, so bad text is refused before any work starts; tokenizing is part of the text
    model's run. Text the normaliser empties entirely (zero-width characters only) is found
    there and reported like no text."""
    from alertfusion.text import TextEncoder

    if text is None:
        return None, "no transcript was given"
    if not isinstance(text, str):
        raise TextError(f"text must be a string, not {type(text).__name__}")
    if len(text) > max_chars:
        raise TextError(
            f"the text has {len(text)} characters; at most {max_chars} are accepted",
            code=ReasonCode.TEXT_TOO_LONG,
            details={"chars": len(text), "max_chars": max_chars},
        )
    TextEncoder.check(text)
    if not text or text.isspace():
        return None, f"the transcript is {'empty' if not text else 'whitespace only'}"
    return text, None


def decode(
    audio: bytes | bytearray | memoryview | str | os.PathLike[str] | DecodedAudio,
    filename: str | None,
    *,
    rate: int,
    min_seconds: float,
    max_seconds: float,
    max_bytes: int,
) -> DecodedAudio:
    """`audio` (file bytes, a path, or audio already decoded at `rate`) as DecodedAudio."""
    from alertfusion.audio import DecodedAudio, decode_audio

    if isinstance(audio, DecodedAudio):
        if audio.sample_rate != rate:
            raise InputError(
                f"decoded audio is at {audio.sample_rate} Hz; the bundle needs {rate} Hz"
            )
        duration = audio.duration_s
        if duration < min_seconds:
            raise AudioError(
                f"the audio is {duration:.3f} s long; at least {min_seconds:g} s is needed",
                code=ReasonCode.TOO_SHORT,
            )
        if duration > max_seconds:
            raise AudioError(
                f"the audio is {duration:.1f} s long; at most {max_seconds:g} s is accepted",
                code=ReasonCode.TOO_LONG,
            )
        return audio
    if not isinstance(audio, bytes | bytearray | memoryview | str | os.PathLike):
        raise InputError(f"audio must be bytes, a path or DecodedAudio, not {type(audio).__name__}")
    return decode_audio(
        audio,
        sample_rate=rate,
        min_seconds=min_seconds,
        max_seconds=max_seconds,
        max_bytes=max_bytes,
        filename=filename,
    )
