"""Audio decoding: bytes or a file -> bounded, validated mono float32 at the model's rate."""

from __future__ import annotations

import io
import math
import os
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from alertfusion import limits
from alertfusion.errors import AudioError, ReasonCode
from alertfusion.sniff import SNIFF_BYTES as SNIFF_BYTES  # re-exported: callers sniff this much
from alertfusion.sniff import Container, sniff_bytes

if TYPE_CHECKING:
    import numpy as np

#: accepted source sample rates (Hz); a header outside this range is not a recording
MIN_SOURCE_RATE = 4_000
MAX_SOURCE_RATE = 384_000
#: more channels than this is a corrupt header, not a recording
MAX_CHANNELS = 64
#: float audio peaks beyond +60 dBFS are not audio (e.g. int16-scaled floats, corrupt data);
#: such values would also overflow the float32 power spectrum downstream
MAX_ABS_SAMPLE = 1000.0
#: how many interleaved samples one read of the decoder returns at most
_BLOCK_SAMPLES = 1 << 18
#: mono source samples resampled in one call (32 MB); longer audio is resampled as a stream
_ONESHOT_MAX_SAMPLES = 1 << 23
#: samples per call of soxr's stream
_STREAM_CHUNK = 1 << 15
#: packets in a row PyAV may fail to decode before the stream counts as broken
_MAX_CONSECUTIVE_PACKET_ERRORS = 32


@dataclass(frozen=True)
class DecodedAudio:
    """Decoded, validated audio."""

    samples: np.ndarray  # float32, mono, C-contiguous, at `sample_rate`
    sample_rate: int
    source_sample_rate: int
    channels: int  # of the source
    format: str  # sniffed container/codec: "wav", "flac", "ogg", "mp3", "m4a", "3gp", ...

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


# --------------------------------------------------------------------------------------------
# sniffing


def sniff_format(head: bytes) -> str | None:
    """The container/codec of a file from its first bytes (`SNIFF_BYTES` suffice), or None.

    Only magic bytes count: a file's name is never trusted. `alertfusion.sniff` decides (the
    probe of the asynchronous path asks it too); this is its name for decoded audio.
    """
    found = sniff_bytes(bytes(head))
    return found.container.decoded_as if found else None


# --------------------------------------------------------------------------------------------
# decoding


def decode_audio(
    source: bytes | bytearray | memoryview | str | os.PathLike[str],
    *,
    sample_rate: int,
    min_seconds: float = limits.MIN_AUDIO_SECONDS,
    max_seconds: float = limits.MAX_AUDIO_SECONDS,
    max_bytes: int = limits.MAX_AUDIO_BYTES,
    filename: str | None = None,
) -> DecodedAudio:
    """Decode `source` (the bytes of a file, or a path) to mono float32 at `sample_rate`.

    What libsndfile reads (WAV/RF64/W64, FLAC, OGG Vorbis/Opus, MP3, AIFF, AU, CAF) goes
    through soundfile exactly as `librosa.load` reads it; the containers phones record
    (M4A/AAC, 3GP/AMR, raw AMR, WebM/Opus, Matroska, ADTS AAC) and codecs libsndfile lacks go
    through PyAV (FFmpeg). Channels are averaged, then python-soxr resamples with librosa's
    `soxr_hq` setting and length rule: the samples equal `librosa.load(..., sr=sample_rate,
    mono=True, res_type="soxr_hq")` wherever both can read the file.

    Bounded: the size is checked before decoding; decoders are read in fixed blocks (a
    header's claimed length never sizes a buffer); decoding stops as soon as more than
    `max_seconds` came out. A file cut short (interrupted upload, sizes that lie) decodes as
    far as its data goes; the duration bounds then apply to what was decoded.

    Raises AudioError: FILE_TOO_LARGE (more than `max_bytes`, before decoding), EMPTY_AUDIO
    (no bytes, or no samples), UNSUPPORTED_FORMAT (not a recognised audio container, or a
    sample rate / channel count outside what recordings have), DECODE_FAILED (recognised but
    unreadable), TOO_LONG (more than `max_seconds`; decoding stops there), TOO_SHORT (less
    than `min_seconds`), NOT_FINITE (NaN/Inf samples, or float samples beyond
    +-MAX_ABS_SAMPLE). `filename` only labels messages.
    """
    import numpy as np

    if sample_rate <= 0:
        raise ValueError("sample_rate must be positive")
    if not 0 <= min_seconds <= max_seconds:
        raise ValueError("need 0 <= min_seconds <= max_seconds")
    name = filename or (os.fspath(source) if isinstance(source, str | os.PathLike) else "the audio")
    details: dict[str, object] = {"filename": name} if filename else {}
    data = _read_source(source, max_bytes, name)
    if not data:
        raise AudioError(f"{name} is empty (0 bytes)", code=ReasonCode.EMPTY_AUDIO, details=details)
    found = sniff_bytes(data)  # an ID3 tag can be longer than SNIFF_BYTES: all bytes given
    if found is None:
        raise AudioError(
            f"{name} is not a supported audio file (WAV, FLAC, OGG, MP3, M4A/AAC, 3GP/AMR, WebM)",
            code=ReasonCode.UNSUPPORTED_FORMAT,
            details=details,
        )
    fmt = found.container.decoded_as
    details["format"] = fmt
    limits = _Limits(
        min_seconds=min_seconds,
        max_seconds=max_seconds,
        target_rate=sample_rate,
        name=name,
        details=details,
    )
    raw = _decode(data, found.container, limits)
    del data
    if raw.frames == 0:
        raise AudioError(
            f"{name} holds no audio samples", code=ReasonCode.EMPTY_AUDIO, details=details
        )
    duration = raw.frames / raw.source_rate
    if duration < min_seconds:
        raise AudioError(
            f"{name} is {duration:.3f} s long; at least {min_seconds:g} s is needed",
            code=ReasonCode.TOO_SHORT,
            details={**details, "duration_s": round(duration, 4), "min_seconds": min_seconds},
        )
    return DecodedAudio(
        samples=np.ascontiguousarray(raw.samples, dtype=np.float32),
        sample_rate=sample_rate,
        source_sample_rate=raw.source_rate,
        channels=raw.channels,
        format=fmt,
    )


def _read_source(
    source: bytes | bytearray | memoryview | str | os.PathLike[str], max_bytes: int, name: str
) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        size = source.nbytes if isinstance(source, memoryview) else len(source)
        _check_size(size, max_bytes, name)
        return source if isinstance(source, bytes) else bytes(source)
    if not isinstance(source, str | os.PathLike):
        raise TypeError(f"source must be bytes or a path, not {type(source).__name__}")
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; regular files ignore it
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise AudioError(f"{name} is not a regular file", code=ReasonCode.DECODE_FAILED)
            _check_size(info.st_size, max_bytes, name)
            # the size can change under us (or be 0, as /proc files say): never read more
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise AudioError(
            f"cannot read {name}: {exc.strerror or exc}",
            code=ReasonCode.DECODE_FAILED,
            details={"errno": exc.errno},
        ) from exc
    _check_size(len(data), max_bytes, name)
    return data


def _check_size(size: int, max_bytes: int, name: str) -> None:
    if size > max_bytes:
        raise AudioError(
            f"{name} is {size} bytes; the limit is {max_bytes}",
            code=ReasonCode.FILE_TOO_LARGE,
            details={"size_bytes": size, "max_bytes": max_bytes},
        )


@dataclass(frozen=True)
class _Limits:
    min_seconds: float
    max_seconds: float
    target_rate: int
    name: str
    details: dict[str, object]

    def error(self, message: str, code: ReasonCode, **extra: object) -> AudioError:
        return AudioError(f"{self.name}: {message}", code=code, details={**self.details, **extra})


@dataclass(frozen=True)
class _Raw:
    samples: np.ndarray  # mono float32 at the target rate
    source_rate: int
    channels: int
    frames: int  # decoded, at the source rate


class _Accumulator:
    """Takes decoded blocks: checks their samples, averages channels, enforces the duration
    limit, and resamples to the target rate as librosa does (python-soxr at `soxr_hq`).

    Up to `_ONESHOT_MAX_SAMPLES` of mono source audio are kept and resampled in one call (what
    librosa does, and python-soxr's fastest path); beyond that, what was kept and every later
    block go through soxr's stream instead, which gives the same samples (checked bit for bit)
    at about half the speed, so memory stays bounded by `max_seconds` at the target rate
    whatever the source's rate and channel count."""

    def __init__(self, limits: _Limits, sample_rate: int, channels: int) -> None:
        if not MIN_SOURCE_RATE <= sample_rate <= MAX_SOURCE_RATE:
            raise limits.error(
                f"sample rate {sample_rate} Hz is outside {MIN_SOURCE_RATE}-{MAX_SOURCE_RATE} Hz",
                ReasonCode.UNSUPPORTED_FORMAT,
                sample_rate=sample_rate,
            )
        if not 1 <= channels <= MAX_CHANNELS:
            raise limits.error(
                f"{channels} channels (1 to {MAX_CHANNELS} are supported)",
                ReasonCode.UNSUPPORTED_FORMAT,
                channels=channels,
            )
        self.limits = limits
        self.sample_rate = sample_rate
        self.channels = channels
        #: more frames than this is TOO_LONG
        self.max_frames = math.floor(limits.max_seconds * sample_rate)
        self.frames = 0
        #: mono blocks at the source rate (before any streaming) or at the target rate (after)
        self.blocks: list[np.ndarray] = []
        self._stream: Any = None

    @property
    def room(self) -> int:
        """Frames still worth reading: one past the limit proves TOO_LONG."""
        return self.max_frames + 1 - self.frames

    @property
    def _resampling(self) -> bool:
        return self.sample_rate != self.limits.target_rate

    def add(self, block: np.ndarray) -> None:
        """Add (frames, channels) float32 samples."""
        import numpy as np

        if block.size:
            # max and min propagate NaN, so one pass each checks finiteness and range
            peak = max(float(block.max()), -float(block.min()))
            if not math.isfinite(peak):
                raise self.limits.error("samples contain NaN or infinity", ReasonCode.NOT_FINITE)
            if peak > MAX_ABS_SAMPLE:
                raise self.limits.error(
                    f"sample values exceed +-{MAX_ABS_SAMPLE:g} (full scale is 1.0): not audio",
                    ReasonCode.NOT_FINITE,
                    peak=peak,
                )
        self.frames += len(block)
        if self.frames > self.max_frames:
            raise self.limits.error(
                f"longer than the {self.limits.max_seconds:g} s limit",
                ReasonCode.TOO_LONG,
                max_seconds=self.limits.max_seconds,
            )
        # np.mean over channels, as librosa.to_mono does (same float32 arithmetic)
        mono = block[:, 0] if block.shape[1] == 1 else np.mean(block, axis=1)
        mono = np.ascontiguousarray(mono, dtype=np.float32)
        if self._stream is not None:
            self.blocks.append(self._stream_chunk(mono))
            return
        self.blocks.append(mono)
        if self._resampling and self.frames > _ONESHOT_MAX_SAMPLES:
            import soxr

            self._stream = soxr.ResampleStream(
                self.sample_rate, self.limits.target_rate, 1, dtype="float32", quality="soxr_hq"
            )
            kept, self.blocks = self.blocks, []
            self.blocks = [self._stream_chunk(b) for b in kept]

    def _stream_chunk(self, mono: np.ndarray) -> np.ndarray:
        import numpy as np

        # soxr's stream is fastest on chunks of a few tens of thousands of samples
        parts = [
            self._stream.resample_chunk(mono[i : i + _STREAM_CHUNK], last=False)
            for i in range(0, len(mono), _STREAM_CHUNK)
        ]
        return np.concatenate(parts) if len(parts) != 1 else parts[0]

    def result(self) -> _Raw:
        import numpy as np

        blocks, self.blocks = self.blocks, []
        n_out = self.frames
        if self._resampling:
            if self._stream is not None:
                blocks.append(self._stream.resample_chunk(np.zeros(0, np.float32), last=True))
            elif self.frames:
                import soxr

                source = np.concatenate(blocks) if len(blocks) != 1 else blocks[0]
                # librosa.load's res_type="soxr_hq"; rebinding `blocks` frees the source
                blocks = [
                    soxr.resample(
                        source, self.sample_rate, self.limits.target_rate, quality="soxr_hq"
                    )
                ]
                del source
            # librosa.resample's length rule: fix_length to ceil(n * target / source)
            n_out = int(np.ceil(self.frames * (float(self.limits.target_rate) / self.sample_rate)))
        return _Raw(_join(blocks, n_out), self.sample_rate, self.channels, self.frames)


def _join(blocks: list[np.ndarray], n: int) -> np.ndarray:
    """The blocks end to end, cut or zero-padded to n samples; each block is released as soon
    as it is copied, so the peak is the blocks plus the result, never more."""
    import numpy as np

    if len(blocks) == 1 and len(blocks[0]) == n:
        return blocks[0]
    out = np.empty(n, dtype=np.float32)
    pos = 0
    blocks.reverse()
    while blocks and pos < n:
        block = blocks.pop()
        take = min(len(block), n - pos)
        out[pos : pos + take] = block[:take]
        pos += take
        del block
    out[pos:] = 0.0
    return out


class _OpenFailed(Exception):
    """libsndfile could not open the data, or not read its first block."""


def _decode(data: bytes, container: Container, limits: _Limits) -> _Raw:
    if not container.soundfile:
        return _decode_pyav(data, container, limits)
    try:
        raw = _decode_soundfile(data, limits)
    except _OpenFailed as exc:
        if container.demuxer is None:  # FFmpeg would misread it (RIFX): libsndfile's word
            raise limits.error(
                f"cannot decode this {container.decoded_as} file: {exc}", ReasonCode.DECODE_FAILED
            ) from exc
        # codecs libsndfile lacks in containers it knows (MP3-in-WAV, FLAC-in-Ogg, ...)
        return _decode_pyav(data, container, limits, first_error=str(exc))
    if raw.frames == 0 and container.decoded_as in ("wav", "w64") and container.demuxer:
        # libsndfile takes a data-chunk size of 0 literally, but a recorder that died before
        # finishing its header leaves exactly that; FFmpeg reads such data to the end of file
        try:
            return _decode_pyav(data, container, limits)
        except AudioError as exc:
            if exc.code not in (ReasonCode.DECODE_FAILED, ReasonCode.EMPTY_AUDIO):
                raise
    return raw


def _decode_soundfile(data: bytes, limits: _Limits) -> _Raw:
    import numpy as np
    import soundfile as sf

    try:
        handle = sf.SoundFile(io.BytesIO(data))
    except Exception as exc:  # libsndfile's refusal, whatever the exception type
        raise _OpenFailed(_libsndfile_message(exc)) from exc
    with handle:
        acc = _Accumulator(limits, handle.samplerate, handle.channels)
        block_frames = max(1, _BLOCK_SAMPLES // acc.channels)
        while acc.room > 0:
            try:
                block = handle.read(min(block_frames, acc.room), dtype="float32", always_2d=True)
            except Exception as exc:
                if acc.frames == 0:
                    # e.g. a FLAC whose STREAMINFO claims an absurd length makes soundfile's
                    # position query fail: FFmpeg may still read it
                    raise _OpenFailed(_libsndfile_message(exc)) from exc
                break  # cut short: what was decoded is used, the duration bounds still apply
            if len(block) == 0:
                break
            acc.add(np.asarray(block))
    return acc.result()


def _libsndfile_message(exc: BaseException) -> str:
    return str(getattr(exc, "error_string", None) or exc)


def _decode_pyav(
    data: bytes, container: Container, limits: _Limits, first_error: str | None = None
) -> _Raw:
    """Decode the first audio stream with FFmpeg. Packets that fail to decode are skipped (up to
    a run of `_MAX_CONSECUTIVE_PACKET_ERRORS`); a demuxer failure part-way ends the stream."""
    import av

    fmt = container.decoded_as
    acc: _Accumulator | None = None
    failures = 0  # packets that did not decode, or a demuxer that gave up
    try:
        source = av.open(
            io.BytesIO(data), mode="r", format=container.demuxer, metadata_errors="ignore"
        )
        with source:
            if not source.streams.audio:
                raise limits.error("no audio stream", ReasonCode.DECODE_FAILED)
            packets = source.demux(source.streams.audio[0])
            in_a_row = 0
            while acc is None or acc.room > 0:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except av.FFmpegError:
                    failures += 1
                    break  # cut short or corrupt from here on: keep what was decoded
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    failures += 1
                    in_a_row += 1
                    if in_a_row > _MAX_CONSECUTIVE_PACKET_ERRORS:
                        break
                    continue
                in_a_row = 0
                for frame in frames:
                    if frame.samples == 0:
                        continue
                    if acc is None:
                        acc = _Accumulator(limits, int(frame.sample_rate), frame.layout.nb_channels)
                    elif (frame.sample_rate, frame.layout.nb_channels) != (
                        acc.sample_rate,
                        acc.channels,
                    ):
                        raise limits.error(
                            "the sample rate or channel count changes mid-stream",
                            ReasonCode.DECODE_FAILED,
                        )
                    acc.add(_frame_samples(frame, limits)[: acc.room])
    except AudioError:
        raise
    except Exception as exc:  # FFmpeg's or PyAV's refusal, whatever the exception type
        reason = first_error or str(exc)
        raise limits.error(
            f"cannot decode this {fmt} file: {reason}", ReasonCode.DECODE_FAILED
        ) from exc
    if acc is None:
        if first_error is not None or failures:
            reason = first_error or "no packet could be decoded"
            raise limits.error(f"cannot decode this {fmt} file: {reason}", ReasonCode.DECODE_FAILED)
        raise limits.error("no audio samples in the stream", ReasonCode.EMPTY_AUDIO)
    return acc.result()


#: PyAV sample formats -> how integer PCM maps to [-1, 1) (as libsndfile scales it)
_INT_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0}


def _frame_samples(frame: Any, limits: _Limits) -> np.ndarray:
    """A PyAV AudioFrame as (frames, channels) float32."""
    import numpy as np

    name = frame.format.name.rstrip("p")
    if name not in ("flt", "dbl", *_INT_SCALE):
        raise limits.error(
            f"decoded samples in an unsupported format ({frame.format.name})",
            ReasonCode.DECODE_FAILED,
        )
    array = frame.to_ndarray()
    if frame.format.is_planar:
        array = array.T
    else:
        array = array.reshape(-1, frame.layout.nb_channels)
    if name == "u8":
        return (array.astype(np.float32) - 128.0) / 128.0
    if name in _INT_SCALE:
        return (array / _INT_SCALE[name]).astype(np.float32)
    return array.astype(np.float32, copy=False)
