"""`POST /predict` and `POST /predict_s3` with the real engine on the tiny bundle: answers
equal to the engine's own, the original response keys, the bad-audio corpus, locations
`/predict_s3` must refuse, and the engine loaded only when the input is worth it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from alertfusion.errors import HTTP_STATUS
from alertfusion.result import to_legacy
from functions.api.deps import get_classifier_provider
from tests.corpus.bad_audio import bad_audio_cases, pcm16, wav_bytes
from tests.integration.api.conftest import BUCKET, Api, sample, sample_transcripts
from tests.integration.api.test_app import error_of

pytestmark = pytest.mark.integration

SAMPLES = ["ko-help-16k.wav", "ko-regular-22k.wav", "ko-robbery-44k-stereo.wav"]
LONG_SAMPLE = "ko-violence-long-16k.wav"


@pytest.fixture
def api(make_api: Callable[..., Api], engine: Any) -> Api:
    return make_api(engine=engine)


def same_verdict(body: dict[str, Any], expected: Any) -> None:
    """The API's answer is the engine's result (timings aside) plus the legacy keys."""
    want = expected.model_dump(mode="json")
    for key in ("label", "label_ko", "is_emergency", "decided_by", "emergency_probability"):
        assert body[key] == want[key], key
    assert body["probabilities"] == want["probabilities"]
    assert body["audio"] == want["audio"]
    assert body["text"] == want["text"]
    assert body["windows"] == want["windows"]
    assert body["model"] == want["model"]
    for key, value in to_legacy(expected).items():
        assert body[key] == value, key


def post_predict(api: Api, audio: bytes, name: str, text: str | None = None) -> Any:
    data = {"text_input": text} if text is not None else {}
    return api.client.post("/predict", files={"audio_file": (name, audio, "audio/wav")}, data=data)


@pytest.mark.parametrize("name", SAMPLES)
@pytest.mark.parametrize("with_text", [False, True])
def test_predict_equals_the_engine(api: Api, engine: Any, name: str, with_text: bool) -> None:
    audio = sample(name)
    text = sample_transcripts()[name] if with_text else None
    response = post_predict(api, audio, name, text)
    assert response.status_code == 200, response.text
    body = response.json()
    # the API runs the text model even when the gate decides (the original's text keys)
    same_verdict(body, engine.classify(audio, text=text, filename=name, always_text=True))
    assert body["result"] == "success"
    assert body["combined_label"] == body["label"]


def test_long_recording_has_per_window_results(api: Api, engine: Any) -> None:
    audio = sample(LONG_SAMPLE)
    body = post_predict(api, audio, LONG_SAMPLE).json()
    assert body["duration_s"] > 20
    assert len(body["windows"]) == 5
    assert [w["index"] for w in body["windows"]] == list(range(5))
    same_verdict(body, engine.classify(audio, filename=LONG_SAMPLE))


def test_empty_text_means_audio_only(api: Api) -> None:
    body = post_predict(api, sample(SAMPLES[0]), "a.wav", text="   ").json()
    assert body["text"]["status"] == "skipped"
    assert body["text_feature"] is None


def test_the_file_name_is_only_a_label(api: Api, engine: Any) -> None:
    audio = sample(SAMPLES[0])
    body = post_predict(api, audio, "../../etc/passwd.png").json()
    same_verdict(body, engine.classify(audio))


def test_text_too_long_is_422(api: Api) -> None:
    response = post_predict(api, sample(SAMPLES[0]), "a.wav", text="가" * 5001)
    assert response.status_code == 422
    assert error_of(response)["code"] == "TEXT_TOO_LONG"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data": {"text_input": "도와주세요"}},  # no file
        {"json": {"audio_file": "x"}},
        {"files": {"audio": ("a.wav", b"RIFF", "audio/wav")}},  # wrong field name
    ],
)
def test_missing_or_misnamed_fields_are_422(api: Api, kwargs: dict[str, Any]) -> None:
    response = api.client.post("/predict", **kwargs)
    assert response.status_code == 422
    assert error_of(response)["code"] == "INVALID_INPUT"


def test_audio_as_a_text_field_is_422(api: Api) -> None:
    response = api.client.post("/predict", data={"audio_file": "RIFF...."})
    assert response.status_code == 422
    assert error_of(response)["code"] == "INVALID_INPUT"


@pytest.mark.parametrize("case", bad_audio_cases(), ids=lambda c: c.name)
def test_bad_audio_corpus_gets_its_reason(api: Api, case: Any) -> None:
    response = post_predict(api, case.data, case.name, text="도와주세요")
    assert response.status_code == HTTP_STATUS[case.expected], response.text
    assert 400 <= response.status_code < 500
    assert error_of(response)["code"] == case.expected.value


def test_non_audio_never_loads_the_engine(make_api: Callable[..., Api], engine: Any) -> None:
    api = make_api()
    loads: list[int] = []

    def provider() -> Any:
        loads.append(1)
        return engine

    api.app.dependency_overrides[get_classifier_provider] = lambda: provider
    for data in (b"", b"<html></html>", bytes(4096)):
        assert post_predict(api, data, "x.wav").status_code in (415, 422)
    assert loads == []
    assert post_predict(api, sample(SAMPLES[0]), "x.wav").status_code == 200
    assert loads == [1]


def test_engine_failures_are_503_not_a_verdict(make_api: Callable[..., Api]) -> None:
    from alertfusion.errors import BundleError

    api = make_api()

    def broken() -> Any:
        raise BundleError("audio_binary.onnx does not match its sha256")

    api.app.dependency_overrides[get_classifier_provider] = lambda: broken
    response = post_predict(api, sample(SAMPLES[0]), "x.wav")
    assert response.status_code == 503
    error = error_of(response)
    assert error["code"] == "BUNDLE_INVALID"
    assert "sha256" not in error["message"]  # details stay in the log


# -- /predict_s3 ------------------------------------------------------------------------------


@pytest.fixture
def stored(api: Api) -> dict[str, bytes]:
    objects = {f"uploads/{name}": sample(name) for name in SAMPLES}
    for key, data in objects.items():
        api.put(key, data)
    return objects


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        (lambda key: {"json": {"s3_key": key}}, None),
        (
            lambda key: {"json": {"s3_uri": f"s3://{BUCKET}/{key}", "text": "살려주세요"}},
            "살려주세요",
        ),
        (lambda key: {"data": {"s3_key": key, "text_input_s3": "살려주세요"}}, "살려주세요"),
        (
            lambda key: {"files": {"s3_key": (None, key), "text_input_s3": (None, "살려주세요")}},
            "살려주세요",
        ),
    ],
    ids=["json-key", "json-uri-text", "form-urlencoded", "form-multipart"],
)
def test_predict_s3_equals_the_engine(
    api: Api,
    engine: Any,
    stored: dict[str, bytes],
    payload: Callable[[str], dict[str, Any]],
    text: str | None,
) -> None:
    key = "uploads/ko-robbery-44k-stereo.wav"
    response = api.client.post("/predict_s3", **payload(key))
    assert response.status_code == 200, response.text
    same_verdict(response.json(), engine.classify(stored[key], text=text, always_text=True))


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"s3_uri": "s3://someone-elses-bucket/uploads/a.wav"}, 403, "FORBIDDEN_LOCATION"),
        ({"s3_uri": f"s3://{BUCKET}x/uploads/a.wav"}, 403, "FORBIDDEN_LOCATION"),
        ({"s3_key": "results/01JD3W7Q5V2ZK8F9X4M6N0P1RS.json"}, 403, "FORBIDDEN_LOCATION"),
        ({"s3_key": "transcripts/x.json"}, 403, "FORBIDDEN_LOCATION"),
        ({"s3_key": "uploadsX/a.wav"}, 403, "FORBIDDEN_LOCATION"),
        ({"s3_key": "../etc/passwd"}, 422, "INVALID_INPUT"),
        ({"s3_key": "uploads/../results/a.json"}, 422, "INVALID_INPUT"),
        ({"s3_key": "uploads/./a.wav"}, 422, "INVALID_INPUT"),
        ({"s3_key": "/uploads/a.wav"}, 422, "INVALID_INPUT"),
        ({"s3_key": "uploads//a.wav"}, 422, "INVALID_INPUT"),
        ({"s3_key": "uploads/"}, 422, "INVALID_INPUT"),
        ({"s3_key": "uploads/a\x00.wav"}, 422, "INVALID_INPUT"),
        ({"s3_key": "uploads\\a.wav"}, 422, "INVALID_INPUT"),
        ({"s3_key": "uploads/" + "a" * 1100}, 422, "INVALID_INPUT"),
        ({"s3_uri": f"https://{BUCKET}.s3.amazonaws.com/uploads/a.wav"}, 422, "INVALID_INPUT"),
        ({"s3_uri": f"s3://{BUCKET}"}, 422, "INVALID_INPUT"),
        (
            {"s3_key": "uploads/a.wav", "s3_uri": f"s3://{BUCKET}/uploads/a.wav"},
            422,
            "INVALID_INPUT",
        ),
        ({}, 422, "INVALID_INPUT"),
        ({"s3_key": 42}, 422, "INVALID_INPUT"),
        (
            {"s3_key": "uploads/ko-help-16k.wav", "text": "a", "text_input_s3": "b"},
            422,
            "INVALID_INPUT",
        ),
        ({"s3_key": "uploads/missing.wav"}, 404, "OBJECT_NOT_FOUND"),
    ],
)
def test_predict_s3_refusals(
    api: Api, stored: dict[str, bytes], payload: dict[str, Any], status: int, code: str
) -> None:
    response = api.client.post("/predict_s3", json=payload)
    assert response.status_code == status, response.text
    assert error_of(response)["code"] == code


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b"s3_key", "text/plain"),
    ],
)
def test_predict_s3_bodies_that_are_not_requests(api: Api, body: bytes, content_type: str) -> None:
    response = api.client.post("/predict_s3", content=body, headers={"content-type": content_type})
    assert response.status_code == 422
    assert error_of(response)["code"] == "INVALID_INPUT"


def test_predict_s3_non_audio_object_is_415(api: Api) -> None:
    api.put("uploads/notes.wav", "도와주세요".encode(), content_type="text/plain")
    response = api.client.post("/predict_s3", json={"s3_key": "uploads/notes.wav"})
    assert response.status_code == 415
    assert error_of(response)["code"] == "UNSUPPORTED_FORMAT"


def test_predict_s3_access_denied_is_404(api: Api, stored: dict[str, bytes]) -> None:
    """Without s3:ListBucket, S3 says AccessDenied for a missing key."""
    api.aws.inject_error("s3", "GetObject", "AccessDenied", times=1, status=403)
    response = api.client.post("/predict_s3", json={"s3_key": "uploads/gone.wav"})
    assert response.status_code == 404
    assert error_of(response)["code"] == "OBJECT_NOT_FOUND"


def test_predict_s3_s3_trouble_is_503(api: Api, stored: dict[str, bytes]) -> None:
    api.aws.inject_error("s3", "GetObject", "InternalError", times=5, status=500)
    response = api.client.post("/predict_s3", json={"s3_key": "uploads/ko-help-16k.wav"})
    assert response.status_code == 503
    assert error_of(response)["code"] == "UPSTREAM_UNAVAILABLE"


def test_predict_s3_size_limit(
    make_api: Callable[..., Api], engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions.api.deps import reset_pipeline
    from tests.integration.conftest import configure

    configure(monkeypatch, MAX_UPLOAD_BYTES="100000")
    reset_pipeline()
    api = make_api(engine=engine)
    api.put("uploads/big.wav", wav_bytes(pcm16(4.0)))  # 128 kB
    api.put("uploads/small.wav", wav_bytes(pcm16(1.0)))  # 32 kB
    big = api.client.post("/predict_s3", json={"s3_key": "uploads/big.wav"})
    assert big.status_code == 413
    assert error_of(big)["code"] == "FILE_TOO_LARGE"
    assert api.client.post("/predict_s3", json={"s3_key": "uploads/small.wav"}).status_code == 200


def test_predict_s3_reads_at_most_the_limit_even_if_the_length_lies(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions.api.inputs import read_object

    class Body:
        def __init__(self) -> None:
            self.asked: list[int] = []

        def read(self, n: int) -> bytes:
            self.asked.append(n)
            return b"x" * n

        def close(self) -> None:
            pass

    body = Body()

    class FakeS3:
        def get_object(self, **_: Any) -> dict[str, Any]:
            return {"Body": body, "ContentLength": 10}

    with pytest.raises(Exception) as info:
        read_object(FakeS3(), BUCKET, "uploads/a.wav", 1000)
    assert getattr(info.value, "code", None) == "FILE_TOO_LARGE"
    assert body.asked == [1001]


def test_allowed_prefixes_are_a_setting(
    make_api: Callable[..., Api], engine: Any, stored: dict[str, bytes]
) -> None:
    api = make_api(engine=engine, predict_s3_prefixes="samples/,uploads/")
    api.put("samples/help.wav", stored["uploads/ko-help-16k.wav"])
    assert api.client.post("/predict_s3", json={"s3_key": "samples/help.wav"}).status_code == 200
    strict = make_api(engine=engine, predict_s3_prefixes="samples/")
    response = strict.client.post("/predict_s3", json={"s3_key": "uploads/ko-help-16k.wav"})
    assert response.status_code == 403
