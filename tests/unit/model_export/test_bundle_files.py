"""alertfusion.bundle_files: the sha256 helper model_export and the runtime share."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from alertfusion.bundle_files import check_file_sums, sha256_file
from alertfusion.errors import BundleError, ReasonCode

pytestmark = pytest.mark.unit


def test_sha256_file_is_the_sha256_of_the_bytes(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # more than one 1 MiB chunk
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_check_file_sums_names_missing_and_changed_files(tmp_path: Path) -> None:
    (tmp_path / "a.onnx").write_bytes(b"a")
    (tmp_path / "b.onnx").write_bytes(b"b")
    good = {"a.onnx": hashlib.sha256(b"a").hexdigest(), "b.onnx": hashlib.sha256(b"b").hexdigest()}
    check_file_sums(tmp_path, good)
    bad = dict(good, **{"b.onnx": hashlib.sha256(b"x").hexdigest(), "c.json": "0" * 64})
    with pytest.raises(BundleError) as info:
        check_file_sums(tmp_path, bad)
    assert info.value.code == ReasonCode.BUNDLE_INVALID
    assert info.value.details == {"missing": ["c.json"], "changed": ["b.onnx"]}
    assert "missing: c.json" in info.value.message and "b.onnx" in info.value.message
