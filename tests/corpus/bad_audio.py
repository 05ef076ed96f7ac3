"""The bad-audio corpus: inputs every entry point must refuse with a precise, stable reason.

`bad_audio_cases()` makes each case in memory (no committed binaries) as
`BadAudioCase(name, data, expected)`: `data` is the whole file's bytes, `expected` the
`ReasonCode` that `alertfusion.audio.decode_audio` raises for it with its default limits
(0.5 s to 600 s). The unit tests check every case against the decoder; the API tests send
every case to `/predict` and expect the same code. Names end in the extension a client might
claim, which the decoder never trusts.
"""

from __future__ import annotations

import io
import struct
import zlib
from functools import cache
from typing import NamedTuple

import numpy as np

from alertfusion.errors import ReasonCode
from tests.conftest import FIXTURES

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_IEEE_FLOAT = 0x0003


class BadAudioCase(NamedTuple):
    name: str
    data: bytes
    expected: ReasonCode


def wav_bytes(
    payload: bytes,
    *,
    rate: int = 16_000,
    channels: int = 1,
    bits: int = 16,
    tag: int = WAVE_FORMAT_PCM,
    riff_size: int | None = None,
    data_size: int | None = None,
    fmt_size: int | None = None,
    fmt_body: bytes | None = None,
    chunks_before_data: bytes = b"",
) -> bytes:
    """A RIFF/WAVE file written field by field, so any field can lie."""
    block_align = (channels * bits // 8) & 0xFFFF
    body = (
        fmt_body
        if fmt_body is not None
        else struct.pack(
            "<HHIIHH",
            tag,
            channels,
            rate,
            (rate * block_align) & 0xFFFFFFFF,
            block_align,
            bits,
        )
    )
    fmt = b"fmt " + struct.pack("<I", len(body) if fmt_size is None else fmt_size) + body
    data = b"data" + struct.pack("<I", len(payload) if data_size is None else data_size) + payload
    wave = b"WAVE" + fmt + chunks_before_data + data
    return b"RIFF" + struct.pack("<I", len(wave) if riff_size is None else riff_size) + wave


def pcm16(seconds: float, rate: int = 16_000, seed: int = 0) -> bytes:
    """A tone with a little noise as 16-bit PCM: audio no decoder can mistake for silence."""
    n = round(seconds * rate)
    t = np.arange(n) / rate
    rng = np.random.default_rng(seed)
    y = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(n)
    return (y * 32767).astype("<i2").tobytes()


def float32_wav(values: np.ndarray, rate: int = 16_000) -> bytes:
    return wav_bytes(
        np.asarray(values, "<f4").tobytes(), rate=rate, bits=32, tag=WAVE_FORMAT_IEEE_FLOAT
    )


def soundfile_bytes(samples: np.ndarray, rate: int, fmt: str, subtype: str) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def _png() -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _rf64_claiming(payload: bytes, claimed: int) -> bytes:
    """An RF64 file whose ds64 chunk claims `claimed` bytes and frames of data."""
    ds64 = struct.pack("<QQQI", claimed, claimed, claimed, 0)
    fmt = struct.pack("<HHIIHH", WAVE_FORMAT_PCM, 1, 16_000, 32_000, 2, 16)
    return (
        b"RF64\xff\xff\xff\xffWAVE"
        + b"ds64"
        + struct.pack("<I", len(ds64))
        + ds64
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data\xff\xff\xff\xff"
        + payload
    )


def _flac_claiming_total_samples(flac: bytes, total: int) -> bytes:
    """A FLAC file whose STREAMINFO claims `total` samples (a 36-bit field)."""
    data = bytearray(flac)
    assert data[:4] == b"fLaC"
    # STREAMINFO body starts at 8; its bytes 10..17 hold rate(20) channels(3) bits(5) total(36)
    field = int.from_bytes(data[18:26], "big")
    field = (field & ~((1 << 36) - 1)) | (total & ((1 << 36) - 1))
    data[18:26] = field.to_bytes(8, "big")
    return bytes(data)


def _m4a_bytes(seconds: float) -> bytes:
    """A real AAC-in-MP4 file (as phones record), encoded with PyAV."""
    import av

    rate = 16_000
    samples = np.frombuffer(pcm16(seconds, rate), "<i2").astype(np.float32) / 32768
    buf = io.BytesIO()
    with av.open(buf, "w", format="ipod") as out:
        stream = out.add_stream("aac", rate=rate, layout="mono")
        frame_size = stream.codec_context.frame_size or 1024
        for start in range(0, len(samples), frame_size):
            chunk = samples[start : start + frame_size][np.newaxis]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), "fltp", "mono")
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


@cache
def bad_audio_cases() -> tuple[BadAudioCase, ...]:
    """Every case of the corpus (built once per process, ~0.2 s)."""
    rng = np.random.default_rng(20240611)
    one_second = pcm16(1.0)
    short = pcm16(0.3)
    cases = [
        # not audio at all, whatever the name says
        BadAudioCase("empty.wav", b"", ReasonCode.EMPTY_AUDIO),
        BadAudioCase("image.png.wav", _png(), ReasonCode.UNSUPPORTED_FORMAT),
        BadAudioCase(
            "json.wav",
            b'{"audio_file": "recording.wav", "text": null}',
            ReasonCode.UNSUPPORTED_FORMAT,
        ),
        BadAudioCase(
            "text.wav", "도와주세요 this is not audio\n".encode(), ReasonCode.UNSUPPORTED_FORMAT
        ),
        BadAudioCase(
            "html.wav",
            b"<!doctype html><html><body>hi</body></html>",
            ReasonCode.UNSUPPORTED_FORMAT,
        ),
        BadAudioCase(
            "jpeg.wav",
            b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(64),
            ReasonCode.UNSUPPORTED_FORMAT,
        ),
        BadAudioCase(
            "pdf.wav", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + bytes(64), ReasonCode.UNSUPPORTED_FORMAT
        ),
        BadAudioCase("zip.m4a", b"PK\x03\x04" + bytes(60), ReasonCode.UNSUPPORTED_FORMAT),
        BadAudioCase("zeros.wav", bytes(4096), ReasonCode.UNSUPPORTED_FORMAT),
        BadAudioCase(
            "random.wav",
            bytes([0x00]) + rng.integers(0, 256, 8191, dtype=np.uint8).tobytes(),
            ReasonCode.UNSUPPORTED_FORMAT,
        ),
        # WAV headers that are missing, cut or lying
        BadAudioCase("riff-header-only.wav", b"RIFF\x04\x00\x00\x00WAVE", ReasonCode.DECODE_FAILED),
        BadAudioCase("header-only.wav", wav_bytes(b""), ReasonCode.EMPTY_AUDIO),
        BadAudioCase(
            "header-claims-2s-no-data.wav",
            wav_bytes(b"", data_size=64_000),
            ReasonCode.EMPTY_AUDIO,
        ),
        BadAudioCase("cut-inside-fmt.wav", wav_bytes(one_second)[:24], ReasonCode.DECODE_FAILED),
        BadAudioCase(
            "truncated-0.3s-of-2s.wav",
            wav_bytes(short, data_size=64_000),
            ReasonCode.TOO_SHORT,
        ),
        BadAudioCase(
            "fmt-size-0.wav",
            wav_bytes(one_second, fmt_size=0, fmt_body=b""),
            ReasonCode.DECODE_FAILED,
        ),
        BadAudioCase(
            "fmt-size-0-body-follows.wav",
            wav_bytes(one_second, fmt_size=0),
            ReasonCode.DECODE_FAILED,
        ),
        BadAudioCase(
            "fmt-size-huge.wav",
            wav_bytes(one_second, fmt_size=0xFFFFFFF0),
            ReasonCode.DECODE_FAILED,
        ),
        BadAudioCase(
            "data-size-4gb-0.3s.wav",
            wav_bytes(short, data_size=0xFFFFFFFF, riff_size=0xFFFFFFFF),
            ReasonCode.TOO_SHORT,
        ),
        BadAudioCase(
            "rf64-claims-2^62-0.3s.wav", _rf64_claiming(short, 1 << 62), ReasonCode.TOO_SHORT
        ),
        BadAudioCase(
            "list-chunk-size-huge.wav",
            wav_bytes(one_second, chunks_before_data=b"LIST\xf0\xff\xff\xffINFO"),
            ReasonCode.DECODE_FAILED,
        ),
        BadAudioCase("sample-rate-0.wav", wav_bytes(one_second, rate=0), ReasonCode.DECODE_FAILED),
        BadAudioCase(
            "sample-rate-1.wav", wav_bytes(one_second, rate=1), ReasonCode.UNSUPPORTED_FORMAT
        ),
        BadAudioCase("channels-0.wav", wav_bytes(one_second, channels=0), ReasonCode.DECODE_FAILED),
        BadAudioCase(
            "channels-300.wav", wav_bytes(one_second, channels=300), ReasonCode.UNSUPPORTED_FORMAT
        ),
        BadAudioCase("bits-0.wav", wav_bytes(one_second, bits=0), ReasonCode.DECODE_FAILED),
        BadAudioCase(
            "codec-0x1234.wav", wav_bytes(one_second, tag=0x1234), ReasonCode.DECODE_FAILED
        ),
        # samples that are not numbers, or not audio-range numbers
        BadAudioCase(
            "float-nan.wav",
            float32_wav(np.r_[np.zeros(8000), np.nan, np.zeros(8000)]),
            ReasonCode.NOT_FINITE,
        ),
        BadAudioCase(
            "float-inf.wav",
            float32_wav(np.r_[np.zeros(8000), -np.inf, np.zeros(8000)]),
            ReasonCode.NOT_FINITE,
        ),
        BadAudioCase(
            "float-int16-scaled.wav",
            float32_wav(np.frombuffer(one_second, "<i2").astype(np.float32)),
            ReasonCode.NOT_FINITE,
        ),
        # durations out of bounds
        BadAudioCase(
            "short-0.3s.wav",
            (FIXTURES / "audio" / "short-0.3s.wav").read_bytes(),
            ReasonCode.TOO_SHORT,
        ),
        BadAudioCase("silence-0.4s.wav", wav_bytes(bytes(2 * 6400)), ReasonCode.TOO_SHORT),
        BadAudioCase(
            "silence-601s.flac",
            soundfile_bytes(np.zeros(601 * 8000, np.int16), 8000, "FLAC", "PCM_16"),
            ReasonCode.TOO_LONG,
        ),
        BadAudioCase(
            "flac-claims-2^36-samples-0.3s.flac",
            _flac_claiming_total_samples(
                soundfile_bytes(np.frombuffer(short, "<i2"), 16_000, "FLAC", "PCM_16"),
                (1 << 36) - 1,
            ),
            ReasonCode.TOO_SHORT,
        ),
        # other containers, broken
        BadAudioCase(
            "flac-cut-in-header.flac",
            soundfile_bytes(np.frombuffer(one_second, "<i2"), 16_000, "FLAC", "PCM_16")[:30],
            ReasonCode.DECODE_FAILED,
        ),
        BadAudioCase("ogg-garbage.ogg", b"OggS" + bytes(200), ReasonCode.DECODE_FAILED),
        BadAudioCase(
            "mp4-ftyp-only.m4a",
            b"\x00\x00\x00\x18ftypM4A \x00\x00\x02\x00isomM4A ",
            ReasonCode.DECODE_FAILED,
        ),
        BadAudioCase("m4a-cut-before-moov.m4a", _m4a_bytes(2.0)[:-2000], ReasonCode.DECODE_FAILED),
        BadAudioCase(
            "ebml-header-only.webm",
            b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08\x42\x82\x84webm\x42\x87\x81\x04\x42\x85\x81\x02",
            ReasonCode.DECODE_FAILED,
        ),
        BadAudioCase("amr-magic-only.amr", b"#!AMR\n", ReasonCode.EMPTY_AUDIO),
        BadAudioCase(
            "id3-tag-only.mp3",
            b"ID3\x04\x00\x00\x00\x00\x00\x0a" + bytes(10),
            ReasonCode.DECODE_FAILED,
        ),
    ]
    names = [case.name for case in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return tuple(cases)
