"""Bad input gets a typed error with a stable reason; decoding is bounded in time and memory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from alertfusion.audio import DecodedAudio, decode_audio
from alertfusion.errors import HTTP_STATUS, AudioError, ReasonCode
from tests.conftest import REPO
from tests.corpus.bad_audio import (
    BadAudioCase,
    _flac_claiming_total_samples,
    _rf64_claiming,
    bad_audio_cases,
    pcm16,
    wav_bytes,
)
from tests.unit.audio.helpers import (
    SR,
    make_signal,
    pyav_encode,
    soundfile_encode,
)

pytestmark = pytest.mark.unit

AUDIO_REASONS = {
    ReasonCode.EMPTY_AUDIO,
    ReasonCode.UNSUPPORTED_FORMAT,
    ReasonCode.DECODE_FAILED,
    ReasonCode.TOO_SHORT,
    ReasonCode.TOO_LONG,
    ReasonCode.NOT_FINITE,
    ReasonCode.FILE_TOO_LARGE,
}


def decode_error(
    source: bytes | bytearray | memoryview | str | os.PathLike[str], **limits: Any
) -> AudioError:
    with pytest.raises(AudioError) as info:
        decode_audio(source, sample_rate=SR, **limits)
    return info.value


# ------------------------------------------------------------------------------- the corpus


@pytest.mark.parametrize("case", bad_audio_cases(), ids=lambda c: c.name)
def test_corpus_case_gets_its_reason(case: BadAudioCase) -> None:
    error = decode_error(case.data, filename=case.name)
    assert error.code == case.expected, error.message
    assert error.permanent and 400 <= HTTP_STATUS[error.code] < 500
    assert case.name in error.message


def test_corpus_covers_every_input_reason_but_size() -> None:
    covered = {case.expected for case in bad_audio_cases()}
    assert covered == AUDIO_REASONS - {ReasonCode.FILE_TOO_LARGE}


def test_corpus_cases_are_small_enough_to_post() -> None:
    assert all(len(case.data) < 256 * 1024 for case in bad_audio_cases())


# ------------------------------------------------------------------------- size, before decode


def test_bytes_over_the_limit_are_refused_before_decoding() -> None:
    # not even audio: the size check comes first
    error = decode_error(b"\x00" * 1001, max_bytes=1000)
    assert error.code == ReasonCode.FILE_TOO_LARGE
    assert error.details == {"size_bytes": 1001, "max_bytes": 1000}
    assert (
        decode_error(memoryview(b"\x00" * 1001), max_bytes=1000).code == ReasonCode.FILE_TOO_LARGE
    )


def test_a_huge_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    sparse = tmp_path / "huge.wav"
    with sparse.open("wb") as fh:
        fh.truncate(200 * 1024 * 1024)  # sparse: no disk used, nothing to read
    tracemalloc.start()
    try:
        error = decode_error(sparse)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert error.code == ReasonCode.FILE_TOO_LARGE
    assert peak < 1024 * 1024


def test_devices_and_fifos_are_refused_without_blocking(tmp_path: Path) -> None:
    # /dev/zero never ends; opening a FIFO nobody writes to would wait forever
    assert decode_error("/dev/zero", max_bytes=4096).code == ReasonCode.DECODE_FAILED
    fifo = tmp_path / "upload.wav"
    os.mkfifo(fifo)
    assert decode_error(fifo).code == ReasonCode.DECODE_FAILED


def test_a_file_that_lies_about_its_size_is_read_no_further_than_the_limit() -> None:
    # /proc files report size 0; the reader stops one byte past the limit all the same
    assert decode_error("/proc/self/maps", max_bytes=16).code == ReasonCode.FILE_TOO_LARGE


def test_unreadable_paths_are_typed_errors(tmp_path: Path) -> None:
    assert decode_error(tmp_path / "missing.wav").code == ReasonCode.DECODE_FAILED
    assert decode_error(tmp_path).code == ReasonCode.DECODE_FAILED


# ------------------------------------------------------------------------- lying headers


def _traced_decode(data: bytes, **limits: Any) -> tuple[object, int]:
    """decode_audio's result (or AudioError) and the peak of Python/numpy memory it used."""
    tracemalloc.start()
    try:
        try:
            result: object = decode_audio(data, sample_rate=SR, **limits)
        except AudioError as exc:
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


ONE_SECOND = pcm16(1.0)
LYING_HEADERS = {
    "wav data size 4 GB": wav_bytes(ONE_SECOND, data_size=0xFFFFFFFF, riff_size=0xFFFFFFFF),
    "wav data size 0": wav_bytes(ONE_SECOND, data_size=0),
    "wav riff size 0": wav_bytes(ONE_SECOND, riff_size=0),
    "rf64 claims 2^62 bytes": _rf64_claiming(ONE_SECOND, 1 << 62),
    "flac claims 2^36 samples": _flac_claiming_total_samples(
        soundfile_encode(np.frombuffer(ONE_SECOND, "<i2"), 16_000, "FLAC", "PCM_16"),
        (1 << 36) - 1,
    ),
}


@pytest.mark.parametrize("name", list(LYING_HEADERS))
def test_lying_sizes_decode_what_is_there_in_bounded_memory(name: str) -> None:
    result, peak = _traced_decode(LYING_HEADERS[name])
    assert not isinstance(result, AudioError), result
    expected = np.frombuffer(ONE_SECOND, "<i2").astype(np.float32) / 32768
    native = decode_audio(LYING_HEADERS[name], sample_rate=16_000).samples
    np.testing.assert_array_equal(native, expected)
    # one second of audio at 44.1 kHz is 176 kB: nothing was sized by the header
    assert peak < 8 * 1024 * 1024, peak


def test_lying_header_fits_where_trusting_it_cannot() -> None:
    """In a process limited to 400 MB of address space, the FLAC claiming 2^36 samples
    (275 GB of float32) decodes, while reading it the way librosa.load does (one read sized
    by the header) runs out of memory."""
    script = textwrap.dedent(
        """
        import io, resource, sys
        limit = 400 * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        import soundfile as sf
        from alertfusion.audio import DecodedAudio, decode_audio
        data = sys.stdin.buffer.read()
        assert sf.info(io.BytesIO(data)).frames == 2**36 - 1
        print(round(decode_audio(data, sample_rate=44100).duration_s, 3))
        try:
            sf.read(io.BytesIO(data), dtype="float32")
        except MemoryError:
            print("MemoryError")
        """
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "layers/core/python")])
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=LYING_HEADERS["flac claims 2^36 samples"],
        capture_output=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().split() == ["1.0", "MemoryError"]


# ----------------------------------------------------------------------- duration bounds


def test_too_long_stops_decoding_at_the_limit() -> None:
    """601 s of FLAC with a 10 s limit: decoding stops after ~10 s of samples, so the memory
    used is a fraction of what the whole file would need (601 s x 8 kHz x 4 B = 19 MB)."""
    data = soundfile_encode(np.zeros(601 * 8000, np.int16), 8000, "FLAC", "PCM_16")
    result, peak = _traced_decode(data, max_seconds=10.0)
    assert isinstance(result, AudioError) and result.code == ReasonCode.TOO_LONG
    assert peak < 3 * 1024 * 1024, peak
    result, _ = _traced_decode(data)  # the default limit is 600 s
    assert isinstance(result, AudioError) and result.code == ReasonCode.TOO_LONG


def test_long_high_rate_audio_is_resampled_as_a_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past `_ONESHOT_MAX_SAMPLES` of source audio the decoder resamples block by block and
    keeps only 44.1 kHz audio. With the threshold lowered to 1 M samples, 10 s at 384 kHz
    (3.84 M samples, 15 MB as float32) peaks far below what the one-shot path needs."""
    import alertfusion.audio

    data = soundfile_encode(np.zeros(10 * 384_000, np.int16), 384_000, "FLAC", "PCM_16")
    oneshot, oneshot_peak = _traced_decode(data)
    monkeypatch.setattr(alertfusion.audio, "_ONESHOT_MAX_SAMPLES", 1 << 20)
    streamed, stream_peak = _traced_decode(data)
    assert isinstance(oneshot, DecodedAudio) and isinstance(streamed, DecodedAudio)
    np.testing.assert_array_equal(streamed.samples, oneshot.samples)
    assert oneshot_peak > 15_000_000 and stream_peak < 8_000_000, (oneshot_peak, stream_peak)


def test_too_long_in_a_container() -> None:
    data = pyav_encode(make_signal(3.0, 48_000), 48_000, "webm", "libopus")
    assert decode_error(data, max_seconds=2.0).code == ReasonCode.TOO_LONG
    assert decode_audio(data, sample_rate=SR, max_seconds=3.1).duration_s == pytest.approx(
        3.0, abs=0.05
    )


@pytest.mark.parametrize("seconds", [0.49, 0.5, 600.0, 600.01])
def test_duration_bounds_are_inclusive(seconds: float) -> None:
    data = soundfile_encode(np.zeros(round(seconds * 8000), np.int16), 8000, "FLAC", "PCM_16")
    if 0.5 <= seconds <= 600.0:
        assert decode_audio(data, sample_rate=SR).duration_s >= seconds
    else:
        expected = ReasonCode.TOO_SHORT if seconds < 1 else ReasonCode.TOO_LONG
        assert decode_error(data).code == expected


# ------------------------------------------------------------------ truncated but decodable


def test_truncated_wav_decodes_what_is_there() -> None:
    """A WAV cut short (an interrupted upload) decodes to the samples it holds."""
    two_seconds = pcm16(2.0)
    data = wav_bytes(two_seconds)[: 44 + 32_000 + 1]  # 1 s and one odd byte of the 2 s
    native = decode_audio(data, sample_rate=16_000).samples
    expected = np.frombuffer(two_seconds[:32_000], "<i2").astype(np.float32) / 32768
    np.testing.assert_array_equal(native, expected)


def test_truncated_flac_decodes_a_prefix() -> None:
    source = make_signal(3.0, 16_000)[:, 0]
    data = soundfile_encode(source, 16_000, "FLAC", "PCM_16")
    native = decode_audio(data[: len(data) // 2], sample_rate=16_000).samples
    assert 0.5 <= len(native) / 16_000 < 2.0
    np.testing.assert_allclose(native, source[: len(native)], rtol=0, atol=1 / 32768)


def test_truncated_fragmented_mp4_decodes_a_prefix() -> None:
    source = make_signal(4.0, 44_100)
    fragmented = {"movflags": "frag_keyframe+empty_moov", "frag_duration": "500000"}
    data = pyav_encode(source, 44_100, "mp4", "aac", container_options=fragmented)
    assert data.index(b"moov") < data.index(b"mdat")
    decoded = decode_audio(data[: len(data) // 2], sample_rate=44_100)
    assert 1.0 < decoded.duration_s < 3.0
    assert np.isfinite(decoded.samples).all()


def test_data_size_zero_is_read_to_the_end() -> None:
    """Recorders that die before finishing the header leave a data size of 0; libsndfile reads
    nothing there, FFmpeg reads to the end of file, and so does the decoder."""
    decoded = decode_audio(wav_bytes(ONE_SECOND, data_size=0), sample_rate=16_000)
    assert decoded.duration_s == 1.0


# ------------------------------------------------------------------------ sample values


def test_float_audio_slightly_over_full_scale_is_accepted() -> None:
    loud = np.clip(make_signal(1.0, 16_000)[:, 0] * 4, -1.5, 1.5)
    data = soundfile_encode(loud, 16_000, "WAV", "FLOAT")
    assert float(np.abs(decode_audio(data, sample_rate=16_000).samples).max()) == pytest.approx(1.5)


def test_a_single_nan_anywhere_is_not_finite() -> None:
    values = make_signal(2.0, 16_000)[:, 0]
    values[-1] = np.nan
    data = soundfile_encode(values, 16_000, "WAV", "FLOAT")
    assert decode_error(data).code == ReasonCode.NOT_FINITE
