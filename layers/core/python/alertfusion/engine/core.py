"""The inference engine: audio (+ transcript) -> ClassificationResult, with ONNX Runtime (the
package docstring describes how it schedules the work)."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from alertfusion import limits
from alertfusion.engine.results import build_result
from alertfusion.engine.runs import AudioRun, TextJob, Tuning
from alertfusion.errors import AudioError, BundleError, InputError, ReasonCode
from alertfusion.result import (
    ClassificationResult,
    Timings,
)
from alertfusion.sessions import Work

if TYPE_CHECKING:
    import numpy as np

    from alertfusion.audio import DecodedAudio
    from alertfusion.bundle import Bundle
    from alertfusion.manifest import Manifest
    from alertfusion.manifest_v2 import ManifestV2
    from alertfusion.recipe.graph import FeatureGraph
    from alertfusion.selfcheck import Readiness, SelfCheck
    from alertfusion.sessions import BundleSessions
    from alertfusion.stt import Transcriber, Transcript
    from alertfusion.text import EncodedText, TextEncoder

# numpy's OpenBLAS with one thread per core makes the small feature matmuls slower and
# erratic, and fights ONNX Runtime's threads for the cores; effective only if numpy is not
# imported yet (the CLI and the benchmark set it before anything else; Lambda sets it in the
# environment).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# tokenizers runs even a one-text batch on its own thread pool unless told not to (a thread
# hand-off per request, and a pool that spins beside the models); read at every call
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

Gate = Literal["binary", "none"]
_GATES: tuple[str, ...] = ("binary", "none")


class Engine:
    """Classifies recordings with one model bundle (thread-safe; create one per process).

    A bundle whose recipe is today's system (alertfusion.recipe.v1) runs the optimised path of
    this class; any other recipe runs its feature graph and decision (engine.recipe_path)."""

    def __init__(
        self,
        bundle: Bundle,
        *,
        gate: Gate | None = None,
        threads: int = 0,
        min_audio_seconds: float = limits.MIN_AUDIO_SECONDS,
        max_audio_seconds: float = limits.MAX_AUDIO_SECONDS,
        max_text_chars: int = limits.MAX_TEXT_CHARS,
        min_window_seconds: float = limits.MIN_WINDOW_SECONDS,
        max_audio_bytes: int = limits.MAX_AUDIO_BYTES,
        tuning: Tuning | None = None,
    ) -> None:
        from alertfusion.sessions import BundleSessions

        _check_gate(gate)
        if threads < 0:
            raise ValueError("threads must be >= 0")
        tuning = tuning or Tuning()
        if threads:
            tuning = replace(tuning, session=replace(tuning.session, intra_op_threads=threads))
        elif not tuning.concurrent and tuning.session.intra_op_threads == 1:
            # one model at a time: give it every core
            tuning = replace(tuning, session=replace(tuning.session, intra_op_threads=_cores()))
        self.tuning = tuning
        self.bundle = bundle
        self.gate: Gate = gate or bundle.default_gate
        #: decision.text_overrides_gate: a window the gate stopped goes to fusion when the
        #: text model alone reads an alert (never in a v1 bundle)
        self.text_overrides_gate = bundle.text_overrides_gate
        self.min_audio_seconds = min_audio_seconds
        self.max_audio_seconds = max_audio_seconds
        self.max_text_chars = max_text_chars
        self.min_window_seconds = min_window_seconds
        self.max_audio_bytes = max_audio_bytes
        overrides = {"text": tuning.text_session} if tuning.text_session is not None else {}
        stt = bundle.v2.recipe.transcriber if bundle.v2 is not None else None
        if stt is not None and not threads and tuning.session.intra_op_threads == 1:
            # the speech-to-text model runs alone, before the others read its transcript:
            # every core is free for it
            overrides[stt] = replace(tuning.session, intra_op_threads=_cores())
        self._sessions: BundleSessions = BundleSessions(bundle, tuning.session, overrides)
        self._encoder: TextEncoder | None = None
        self._graph: FeatureGraph | None = None
        self._transcriber: Transcriber | None = None
        self._encoder_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        #: why this engine must not answer (a failed self-check); None while it may
        self.unready: str | None = None
        #: the serving CPU's self-check, once `get_engine` ran it
        self.readiness: Readiness | None = None

    @property
    def spec(self) -> ManifestV2:
        """The bundle's manifest as v2 (a v1 manifest mapped onto v2 when first asked for)."""
        return self.bundle.spec

    @property
    def has_text_model(self) -> bool:
        """Whether a model of the recipe reads the transcript (every v1 bundle's does)."""
        v2 = self.bundle.v2
        return v2 is None or any(m.source == "transcript" for m in v2.recipe.models.values())

    @property
    def manifest(self) -> Manifest:
        """The v1 manifest of today's system (BUNDLE_INVALID for another recipe: read
        `spec`)."""
        return self.bundle.manifest

    # ---------------------------------------------------------------------------------------
    # construction

    @classmethod
    def from_bundle(
        cls,
        location: str | os.PathLike[str],
        *,
        cache_dir: str | None = None,
        gate: Gate | None = None,
        threads: int = 0,
        **limits: Any,
    ) -> Engine:
        """An engine for the bundle at `location` (a directory or an s3:// URI, fetched once
        into `cache_dir`); the bundle is hash-checked now, the sessions are created lazily.
        `limits` are the keyword arguments of `Engine()` (min/max audio seconds, ...)."""
        from alertfusion.bundle import load_bundle

        _check_gate(gate)
        return cls(load_bundle(location, cache_dir=cache_dir), gate=gate, threads=threads, **limits)

    def warm_up(self) -> None:
        """Create the sessions and the tokenizer now (readiness probes, the Lambda init
        phase)."""
        if self.bundle.text is not None:
            self._text_encoder()
        self._sessions.create_all(self._executor().submit)
        if self.transcribes:
            self.transcriber()  # its alphabet or tokenizer, and a whisper decoder's session

    @property
    def loaded(self) -> bool:
        """True once every session exists."""
        return self._sessions.loaded()

    @property
    def sessions(self) -> BundleSessions:
        return self._sessions

    def feature_graph(self) -> FeatureGraph:
        """The recipe's feature graph (alertfusion.recipe.graph), made once."""
        from alertfusion.recipe.graph import FeatureGraph

        graph = self._graph
        if graph is None:
            graph = self._graph = FeatureGraph(self.spec.recipe)
        return graph

    def transcriber(self) -> Transcriber:
        """The recipe's speech-to-text model (alertfusion.stt), made once; BUNDLE_INVALID when
        the recipe's transcript comes from elsewhere."""
        found = self._transcriber
        if found is None:
            from alertfusion.stt import Transcriber

            name = self.spec.recipe.transcriber
            if name is None:
                raise BundleError(
                    f"recipe {self.bundle.recipe_name} has no speech-to-text model (its "
                    f"transcript_source is {self.spec.recipe.transcript_source})"
                )
            found = self._transcriber = Transcriber(self, name)
        return found

    def transcribe(
        self,
        audio: bytes | bytearray | memoryview | str | os.PathLike[str] | DecodedAudio,
        *,
        filename: str | None = None,
    ) -> Transcript:
        """The bundle's own transcript of one recording (the recipe's transcribe model)."""
        if self.unready is not None:
            raise BundleError(self.unready, code=ReasonCode.SELFCHECK_FAILED)
        transcriber = self.transcriber()
        return transcriber.transcribe(self._decode(audio, filename).samples)

    def close(self) -> None:
        """Stop the worker thread (the engine stays usable: it starts again on demand)."""
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def self_check(self, names: list[str] | None = None) -> SelfCheck:
        """Run the bundle's golden set on this CPU with this engine's sessions (creating
        them); see alertfusion.selfcheck."""
        from alertfusion.selfcheck import run_selfcheck

        self.warm_up()
        return run_selfcheck(
            self.bundle,
            self._sessions.run,
            names=names,
            fallback=self._sessions.fallback,
            submit=self._executor().submit if self.tuning.concurrent else None,
            steps=self.whisper_step_logits,
        )

    def whisper_step_logits(self, name: str, features: np.ndarray, ids: list[int]) -> np.ndarray:
        """The bundle's Whisper model's next-token logits along `ids`, teacher forced (its
        golden row; alertfusion.stt_whisper.step_logits)."""
        from alertfusion.stt_whisper import step_logits

        whisper = self.transcriber().whisper
        if whisper is None or name != self.spec.recipe.transcriber:
            raise BundleError(f"model {name} of this bundle is not a Whisper model")
        return step_logits(whisper.sessions, features, ids)

    def use_fp32_fallback(self, names: list[str]) -> None:
        """Serve `names` with their fp32 fallback models (BUNDLE_INVALID without one)."""
        self._sessions.use_fallback(names)

    def _executor(self) -> ThreadPoolExecutor:
        pool = self._pool
        if pool is None:
            with self._pool_lock:
                if self._pool is None:
                    # one worker: with the calling thread that is one thread per core of the
                    # 2-vCPU machines this is tuned for (docs/DECISIONS.md, "Scheduling")
                    self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alertfusion")
                pool = self._pool
        return pool

    def _text_encoder(self) -> TextEncoder:
        encoder = self._encoder
        if encoder is None:
            with self._encoder_lock:
                if self._encoder is None:
                    from alertfusion.text import TextEncoder

                    text = self.bundle.text
                    assert text is not None  # a transcript model needs one (manifest v2)
                    self._encoder = TextEncoder.from_file(
                        self.bundle.path(text.tokenizer_file), max_len=text.max_len
                    )
                encoder = self._encoder
        return encoder

    # ---------------------------------------------------------------------------------------
    # classification

    def classify(
        self,
        audio: bytes | bytearray | memoryview | str | os.PathLike[str] | DecodedAudio,
        *,
        text: str | None = None,
        filename: str | None = None,
        gate: Gate | None = None,
        always_text: bool = False,
        text_source: Literal["client", "aws_transcribe"] = "client",
    ) -> ClassificationResult:
        """Classify one recording (the bytes of a file, a path, or decoded audio at the
        manifest's sample rate), with its transcript if there is one.

        `always_text`: run the text model on the transcript even when the gate judges every
        window regular (the verdict does not change; the result then reports the text
        model's answer, which the original server's response keys carry).

        Raises AudioError for audio that cannot be used (EMPTY_AUDIO, UNSUPPORTED_FORMAT,
        DECODE_FAILED, TOO_SHORT, TOO_LONG, NOT_FINITE, FILE_TOO_LARGE), TextError for text
        that cannot be used (TEXT_TOO_LONG, INVALID_INPUT), InputError for a bad argument.
        No text, or whitespace only, gives an audio-only verdict that says so, unless the
        recipe's transcript comes from its own speech-to-text model, which then transcribes
        the recording (the caller's text always wins). `text_source` is what the result's
        `transcript.source` says of a given text.
        """
        started = time.perf_counter()
        if self.unready is not None:
            raise BundleError(self.unready, code=ReasonCode.SELFCHECK_FAILED)
        _check_gate(gate)
        use_gate: Gate = gate or self.gate
        transcript, no_text_detail = self._check_text(text)
        if self.bundle.legacy is None:
            from alertfusion.engine.recipe_path import classify_recipe

            return classify_recipe(
                self, audio, filename, transcript, no_text_detail, use_gate, text_source
            )
        heard: Transcript | None = None
        decode_first_ms = 0.0
        if transcript is None and self.transcribes:
            # today's system with its own speech-to-text model: the transcript first (the
            # decoded audio is reused below)
            t = time.perf_counter()
            audio = self._decode(audio, filename)
            decode_first_ms = _ms(t)
            heard = self.transcriber().transcribe(audio.samples)
            if heard.text:
                transcript, no_text_detail = heard.text, None
            else:
                no_text_detail = "the speech-to-text model heard no words"
        concurrent = self.tuning.concurrent
        text_job: TextJob | None = None
        if (
            transcript is not None
            and concurrent
            and (use_gate == "none" or always_text or self.tuning.speculative_text)
        ):
            # the text model does not depend on the audio: tokenizing and the model run beside
            # decoding (the first tokenizing of a request is slow, its tables evicted from
            # the cache by the previous request's models: the worker has that time to spare)
            text_job = TextJob(self, transcript)
        try:
            t = time.perf_counter()
            decoded = self._decode(audio, filename)
            decode_ms = _ms(t) + decode_first_ms
            samples, dropped_tail_s = self._scored_samples(decoded.samples)
            run = self._run_audio(samples, use_gate, transcript, text_job)
            text_job = run.text_job
        except BaseException:
            if text_job is not None:
                text_job.cancel()
            raise

        encoded: EncodedText | None = None
        text_logits: np.ndarray | None = None
        text_ms = 0.0
        skipped: str | None = None
        if transcript is None:
            skipped = "NO_TEXT"
        elif not run.audio_logits and not always_text:
            skipped = "GATE_REGULAR"
            if text_job is not None:
                text_job.cancel()
            # still tokenized: the result tells the token count, or that there were no words
            encoded = self._text_encoder().encode(transcript)
        elif text_job is not None:
            encoded, text_logits, text_ms = text_job.result()
        else:
            encoded, text_logits, text_ms = self._run_text(transcript)
        if transcript is not None and encoded is None:
            skipped, no_text_detail = "NO_TEXT", _NO_WORDS
        gate_logits, audio_logits = run.gate_logits, run.audio_logits
        features_ms, audio_ms = run.features_ms, run.audio_ms
        spans_s = run.spans_s

        t = time.perf_counter()
        from alertfusion.fusion import decide_windows, select_window

        decisions = decide_windows(
            n_windows=len(spans_s),
            regular_index=self.manifest.labels.regular_index,
            gate_logits=gate_logits,
            audio_logits=audio_logits,
            text_logits=text_logits,
        )
        selected = select_window(decisions)
        fusion_ms = _ms(t)
        result = build_result(
            self.manifest,
            fallback=self._sessions.fallback,
            decisions=decisions,
            selected=selected,
            spans=spans_s,
            gate=use_gate,
            gate_logits=gate_logits,
            audio_logits=audio_logits,
            text_logits=text_logits,
            encoded=encoded,
            skipped=skipped,
            no_text_detail=no_text_detail,
            duration_s=decoded.duration_s,
            dropped_tail_s=dropped_tail_s,
            schema_version=self.bundle.schema_version,
            recipe=self.bundle.recipe_name,
            timings=Timings(
                decode_ms=decode_ms,
                features_ms=features_ms,
                audio_models_ms=audio_ms,
                text_model_ms=text_ms,
                fusion_ms=fusion_ms,
                total_ms=_ms(started),
            ),
        )
        from alertfusion.result import TranscriptInfo

        if heard is not None:
            info = TranscriptInfo(
                source="model", text=heard.text, model=heard.model, n_tokens=heard.n_tokens,
                ms=round(heard.ms, 3),
            )  # fmt: skip
        elif transcript is not None:
            info = TranscriptInfo(source=text_source, text=transcript)
        else:
            return result
        return result.model_copy(update={"transcript": info})

    @property
    def transcribes(self) -> bool:
        """The bundle's recipe takes its transcript from its own speech-to-text model."""
        v2 = self.bundle.v2
        return v2 is not None and v2.recipe.transcriber is not None

    def _check_text(self, text: str | None) -> tuple[str | None, str | None]:
        """The transcript to tokenize, or None and why there is none (engine.inputs)."""
        from alertfusion.engine.inputs import check_text

        return check_text(text, self.max_text_chars)

    def _decode(
        self,
        audio: bytes | bytearray | memoryview | str | os.PathLike[str] | DecodedAudio,
        filename: str | None,
    ) -> DecodedAudio:
        from alertfusion.engine.inputs import decode

        return decode(
            audio,
            filename,
            rate=self.bundle.sample_rate,
            min_seconds=self.min_audio_seconds,
            max_seconds=self.max_audio_seconds,
            max_bytes=self.max_audio_bytes,
        )

    def _scored_samples(self, samples: np.ndarray) -> tuple[np.ndarray, float]:
        """The samples whose windows are scored, and the seconds of tail left out (see the
        module docstring)."""
        cfg = self.manifest.audio
        step = cfg.window_samples
        tail = len(samples) % step
        if len(samples) > step and 0 < tail < self.min_window_seconds * cfg.sample_rate:
            return samples[: len(samples) - tail], tail / cfg.sample_rate
        return samples, 0.0

    def _run_audio(
        self,
        samples: np.ndarray,
        gate: Gate,
        transcript: str | None,
        text_job: TextJob | None,
    ) -> AudioRun:
        """Feature images window by window, and the audio models on them.

        Each model run (one model, one window) is a task of a per-request queue that this
        thread and the engine's worker both take from, so a long recording's windows spread
        over both cores while a short one's stay here beside the text model (which the worker
        runs first). Windows are queued as soon as their image exists. Gate off: both models on
        every window. Gate on: the binary model on every window; then the 6-class model on the
        windows that passed, and the text model (if not started already) when any passed.
        """
        import numpy as np

        from alertfusion.features import feature_image, window_spans
        from alertfusion.fusion import check_logits, gate_passed

        cfg = self.manifest.audio
        models = self.manifest.models
        spans = window_spans(len(samples), cfg)
        n = len(spans)
        if n == 0:
            raise AudioError("no samples to classify", code=ReasonCode.EMPTY_AUDIO)
        concurrent = self.tuning.concurrent
        images = np.empty((n, *cfg.input_shape), dtype=np.float32)
        work = Work()
        binary: list[np.ndarray | None] = [None] * n
        multiclass: dict[int, np.ndarray] = {}

        def run_binary(k: int) -> None:
            binary[k] = work.timed(
                self._sessions.run,
                "audio_binary",
                {models.audio_binary.input_names[0]: images[k : k + 1]},
            )

        def run_multiclass(k: int) -> None:
            multiclass[k] = work.timed(
                self._sessions.run,
                "audio_multiclass",
                {models.audio_multiclass.input_names[0]: images[k : k + 1]},
            )

        t = time.perf_counter()
        helping = False
        try:
            for k, (start, end) in enumerate(spans):
                images[k] = feature_image(samples[start:end], cfg)
                work.add(partial(run_binary, k))
                if gate == "none":
                    work.add(partial(run_multiclass, k))
                if concurrent and not helping:
                    # queued behind the text model if that runs: the worker helps once free
                    self._executor().submit(work.drain)
                    helping = True
            features_ms = _ms(t)
            work.finish()
            gate_logits = np.concatenate([b for b in binary if b is not None], axis=0)
            check_logits("audio_binary", gate_logits, n, len(models.audio_binary.labels))
            if gate == "binary":
                keep = [
                    int(i)
                    for i in gate_passed(gate_logits, self.manifest.labels.regular_index).nonzero()[
                        0
                    ]
                ]
                if self.text_overrides_gate and transcript is not None and len(keep) < n:
                    text_job = text_job or TextJob(self, transcript)
                    if self._text_reads_alert(text_job):
                        keep = list(range(n))  # decision.text_overrides_gate
                if keep and transcript is not None and text_job is None and concurrent:
                    text_job = TextJob(self, transcript)
                for k in keep:
                    work.add(partial(run_multiclass, k))
                if concurrent and len(keep) > 1:
                    self._executor().submit(work.drain)
                work.finish()
        except BaseException:
            work.abandon()
            raise
        if multiclass:
            rows = sorted(multiclass)
            stacked = np.concatenate([multiclass[k] for k in rows], axis=0)
            check_logits(
                "audio_multiclass", stacked, len(rows), len(models.audio_multiclass.labels)
            )
            audio_logits = {k: stacked[i] for i, k in enumerate(rows)}
        else:
            audio_logits = {}
        sr = cfg.sample_rate
        return AudioRun(
            gate_logits=gate_logits,
            audio_logits=audio_logits,
            spans_s=[(s / sr, e / sr) for s, e in spans],
            features_ms=features_ms,
            audio_ms=work.span_ms,
            text_job=text_job,
        )

    def _text_reads_alert(self, job: TextJob) -> bool:
        """Whether the text model's top label (of the transcript `job` runs) is an alert."""
        _, logits, _ = job.result()
        return logits is not None and int(logits.argmax()) != self.manifest.labels.regular_index

    def _run_text(
        self, transcript: str, run_options: Any = None, name: str = "text"
    ) -> tuple[EncodedText | None, np.ndarray | None, float]:
        """Tokenize a checked transcript and run the text model: (inputs, logits, ms), or
        (None, None, 0.0) when tokenizing leaves no words."""
        from alertfusion.fusion import check_logits

        start = time.perf_counter()
        encoded = self._text_encoder().encode(transcript)
        if encoded is None:
            return None, None, 0.0
        entry = self.bundle.entries[name]
        feeds = encoded.feeds()
        logits = self._sessions.run(name, {i: feeds[i] for i in entry.input_names}, run_options)
        check_logits(name, logits, 1, self.bundle.output_width(name))
        return encoded, logits[0], _ms(start)


#: why a transcript that tokenizes to nothing (zero-width characters only) counts as no text
_NO_WORDS = "the transcript has no words"


def _check_gate(gate: object) -> None:
    if gate is not None and gate not in _GATES:
        raise InputError(f"gate must be 'binary' or 'none', not {gate!r}")


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1e3


def _cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
