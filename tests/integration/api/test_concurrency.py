"""20 parallel `/predict` and `/predict_s3` requests against a live uvicorn give 20 correct,
independent answers (the original server shared one temp file between S3 requests)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import requests

from tests.corpus.bad_audio import wav_bytes
from tests.integration.api.conftest import Api, LiveServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_REQUESTS = 20


def distinct_recordings(n: int) -> list[bytes]:
    """n different 2 s WAVs: tones and noise that differ per index."""
    rate = 16_000
    t = np.arange(2 * rate) / rate
    out = []
    for i in range(n):
        rng = np.random.default_rng(1000 + i)
        y = 0.25 * np.sin(2 * np.pi * (120 + 97 * i) * t) + (0.02 + 0.01 * i) * rng.standard_normal(
            len(t)
        )
        out.append(wav_bytes((np.clip(y, -1, 1) * 32767).astype("<i2").tobytes(), rate=rate))
    return out


@pytest.fixture
def server(make_api: Callable[..., Api], engine: Any) -> Iterator[tuple[LiveServer, Api]]:
    api = make_api(engine=engine)
    with LiveServer(api.app) as live:
        yield live, api


def fingerprint(body: dict[str, Any]) -> tuple[Any, ...]:
    """What must be identical between the API's answer and the engine's (timings differ)."""
    return (
        body["label"],
        body["emergency_probability"],
        tuple(sorted((body["probabilities"] or {}).items())),
        tuple(w["emergency_probability"] for w in body["windows"]),
        body["audio"]["gate"]["probabilities"]["alert"] if body["audio"]["gate"] else None,
        body["text"]["status"],
    )


def test_parallel_requests_get_their_own_answers(
    server: tuple[LiveServer, Api], engine: Any
) -> None:
    live, api = server
    recordings = distinct_recordings(N_REQUESTS)
    texts = [f"도와주세요 {i}번" if i % 3 else None for i in range(N_REQUESTS)]
    expected = [
        fingerprint(engine.classify(audio, text=text, always_text=True).model_dump(mode="json"))
        for audio, text in zip(recordings, texts, strict=True)
    ]
    # the inputs really differ, so a mixed-up answer cannot pass by chance
    assert len(set(expected)) == N_REQUESTS
    for i in range(1, N_REQUESTS, 2):
        api.put(f"uploads/parallel-{i}.wav", recordings[i])

    barrier = threading.Barrier(N_REQUESTS)

    def call(i: int) -> dict[str, Any]:
        barrier.wait(timeout=30)  # every request in flight at once
        text = texts[i]
        if i % 2 == 0:
            data = {"text_input": text} if text else {}
            response = requests.post(
                f"{live.url}/predict",
                files={"audio_file": ("same-name.wav", recordings[i], "audio/wav")},
                data=data,
                timeout=120,
            )
        else:
            payload = {"s3_key": f"uploads/parallel-{i}.wav"}
            if text:
                payload["text_input_s3"] = text
            response = requests.post(f"{live.url}/predict_s3", json=payload, timeout=120)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    with ThreadPoolExecutor(max_workers=N_REQUESTS) as pool:
        answers = list(pool.map(call, range(N_REQUESTS)))
    assert [fingerprint(a) for a in answers] == expected
