"""Bundle loading: local directories and s3:// URIs (moto), sums checked, downloaded once."""

from __future__ import annotations

import json
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alertfusion import aws
from alertfusion.bundle import load_bundle, parse_s3_uri
from alertfusion.engine import Engine
from alertfusion.errors import BundleError, ReasonCode, TransientError
from alertfusion.manifest import MANIFEST_FILE
from tests.unit.engine.conftest import HELP_WAV

pytestmark = pytest.mark.unit

BUCKET = "models-bucket"
PREFIX = "bundles/tiny"


def _copy(bundle: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "bundle"
    shutil.copytree(bundle, dest)
    return dest


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


# --- local directories -----------------------------------------------------------------------


def test_a_local_bundle_loads_and_is_checked(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    assert bundle.directory == tiny_bundle
    assert bundle.manifest.bundle_version.startswith("demo-tiny")


@pytest.mark.parametrize("victim", ["text.onnx", "audio_binary.onnx", "tokenizer.json"])
def test_a_tampered_file_is_refused(tiny_bundle: Path, tmp_path: Path, victim: str) -> None:
    copy = _copy(tiny_bundle, tmp_path)
    _flip_last_byte(copy / victim)
    with pytest.raises(BundleError) as err:
        Engine.from_bundle(copy)
    assert err.value.code == ReasonCode.BUNDLE_INVALID
    assert err.value.details["changed"] == [victim]


def test_a_missing_file_is_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    copy = _copy(tiny_bundle, tmp_path)
    (copy / "audio_multiclass.onnx").unlink()
    with pytest.raises(BundleError) as err:
        load_bundle(copy)
    assert err.value.code == ReasonCode.BUNDLE_INVALID
    assert err.value.details["missing"] == ["audio_multiclass.onnx"]


def test_an_invalid_manifest_is_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    copy = _copy(tiny_bundle, tmp_path)
    manifest = json.loads((copy / MANIFEST_FILE).read_text())
    manifest["models"]["text"]["labels"] = ["a", "b"]
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleError) as err:
        load_bundle(copy)
    assert err.value.code == ReasonCode.BUNDLE_INVALID
    (copy / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(BundleError) as err:
        load_bundle(copy)
    assert err.value.code == ReasonCode.BUNDLE_INVALID


def test_no_bundle_there(tmp_path: Path) -> None:
    for location in (tmp_path / "nothing", tmp_path):
        with pytest.raises(BundleError) as err:
            load_bundle(location)
        assert err.value.code == ReasonCode.BUNDLE_NOT_FOUND


def test_a_model_onnx_runtime_cannot_load_is_refused_when_its_session_is_made(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    """Right sums, wrong content (a manifest rewritten to match garbage): BUNDLE_INVALID."""
    from alertfusion.bundle_files import sha256_file

    copy = _copy(tiny_bundle, tmp_path)
    (copy / "text.onnx").write_bytes(b"not an onnx model")
    manifest = json.loads((copy / MANIFEST_FILE).read_text())
    manifest["models"]["text"]["sha256"] = sha256_file(copy / "text.onnx")
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    engine = Engine.from_bundle(copy)
    with pytest.raises(BundleError) as err:
        engine.warm_up()
    assert err.value.code == ReasonCode.BUNDLE_INVALID
    engine.close()


# --- s3:// -----------------------------------------------------------------------------------


def test_s3_uris_parse() -> None:
    assert parse_s3_uri("s3://b/p/q/") == ("b", "p/q")
    assert parse_s3_uri("s3://b") == ("b", "")
    for bad in ("s3://", "s3:///p", "s3://b/p/../q", "s3://b/p//q"):
        with pytest.raises(BundleError) as err:
            parse_s3_uri(bad)
        assert err.value.code == ReasonCode.BUNDLE_NOT_FOUND


@pytest.fixture
def s3(tiny_bundle: Path) -> Iterator[Any]:
    """moto S3 with the tiny bundle under s3://BUCKET/PREFIX, and a counter of GetObject keys."""
    from moto import mock_aws

    with mock_aws():
        aws.reset_clients()
        client = aws.s3()
        client.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "ap-northeast-2"}
        )
        for path in tiny_bundle.iterdir():
            client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{path.name}", Body=path.read_bytes())
        gets: Counter[str] = Counter()

        def count(params: dict[str, Any], **_: Any) -> None:
            gets[params["Key"].rsplit("/", 1)[-1]] += 1

        client.meta.events.register("before-parameter-build.s3.GetObject", count)
        client.gets = gets
        try:
            yield client
        finally:
            aws.reset_clients()


def test_an_s3_bundle_is_downloaded_once(s3: Any, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    uri = f"s3://{BUCKET}/{PREFIX}"
    engine = Engine.from_bundle(uri, cache_dir=str(cache))
    assert engine.classify(HELP_WAV, text="도와주세요", gate="none").text.status == "used"
    engine.close()
    assert s3.gets == Counter(dict.fromkeys([MANIFEST_FILE, *engine.manifest.files()], 1))
    # a second process on the same machine: only the manifest is read again
    again = load_bundle(uri + "/", cache_dir=cache)
    assert again.directory == engine.bundle.directory
    assert s3.gets[MANIFEST_FILE] == 2
    assert all(s3.gets[name] == 1 for name in engine.manifest.files())
    assert [p.name for p in cache.iterdir()] == [again.directory.name]


def test_a_new_bundle_at_the_same_uri_gets_its_own_directory(
    s3: Any, tmp_path: Path, tiny_bundle: Path
) -> None:
    cache = tmp_path / "cache"
    uri = f"s3://{BUCKET}/{PREFIX}"
    first = load_bundle(uri, cache_dir=cache)
    manifest = json.loads((tiny_bundle / MANIFEST_FILE).read_text())
    manifest["bundle_version"] = "demo-tiny-v2"
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{MANIFEST_FILE}", Body=json.dumps(manifest))
    second = load_bundle(uri, cache_dir=cache)
    assert second.manifest.bundle_version == "demo-tiny-v2"
    assert second.directory != first.directory
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [first.directory.name, second.directory.name]
    )


def test_a_tampered_s3_object_is_refused_and_leaves_nothing(s3: Any, tmp_path: Path) -> None:
    key = f"{PREFIX}/text.onnx"
    body = bytearray(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    body[100] ^= 0x01
    s3.put_object(Bucket=BUCKET, Key=key, Body=bytes(body))
    cache = tmp_path / "cache"
    with pytest.raises(BundleError) as err:
        Engine.from_bundle(f"s3://{BUCKET}/{PREFIX}", cache_dir=str(cache))
    assert err.value.code == ReasonCode.BUNDLE_INVALID
    assert err.value.details["changed"] == ["text.onnx"]
    assert list(cache.iterdir()) == []  # no partial or unverified bundle stays behind


def test_a_tampered_cache_is_refused(s3: Any, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    bundle = load_bundle(f"s3://{BUCKET}/{PREFIX}", cache_dir=cache)
    _flip_last_byte(bundle.directory / "audio_binary.onnx")
    with pytest.raises(BundleError) as err:
        load_bundle(f"s3://{BUCKET}/{PREFIX}", cache_dir=cache)
    assert err.value.code == ReasonCode.BUNDLE_INVALID


def test_an_object_larger_than_the_manifest_says_is_refused(s3: Any, tmp_path: Path) -> None:
    key = f"{PREFIX}/audio_binary.onnx"
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    s3.put_object(Bucket=BUCKET, Key=key, Body=body + bytes(2 << 20))
    with pytest.raises(BundleError) as err:
        load_bundle(f"s3://{BUCKET}/{PREFIX}", cache_dir=tmp_path / "cache")
    assert err.value.code == ReasonCode.BUNDLE_INVALID
    assert list((tmp_path / "cache").iterdir()) == []


@pytest.mark.parametrize("uri", [f"s3://no-such-bucket/{PREFIX}", f"s3://{BUCKET}/no/such/prefix"])
def test_nothing_at_the_uri(s3: Any, tmp_path: Path, uri: str) -> None:
    with pytest.raises(BundleError) as err:
        load_bundle(uri, cache_dir=tmp_path / "cache")
    assert err.value.code == ReasonCode.BUNDLE_NOT_FOUND


def test_s3_failures_a_retry_may_fix_are_transient(s3: Any, tmp_path: Path) -> None:
    from botocore.exceptions import ClientError

    def fail(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow down"}}, "GetObject")

    s3.meta.events.register("before-call.s3.GetObject", fail)
    with pytest.raises(TransientError) as err:
        load_bundle(f"s3://{BUCKET}/{PREFIX}", cache_dir=tmp_path / "cache")
    assert err.value.code == ReasonCode.UPSTREAM_UNAVAILABLE


def test_concurrent_first_loads_publish_one_directory(s3: Any, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    results: list[Path] = []
    errors: list[BaseException] = []

    def load() -> None:
        try:
            results.append(load_bundle(f"s3://{BUCKET}/{PREFIX}", cache_dir=cache).directory)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(results)) == 1
    assert [p.name for p in cache.iterdir()] == [results[0].name]
