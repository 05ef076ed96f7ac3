"""The tiny-bundle cache's key and refusals, and the import block of `make test-fast`."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

import pytest

from alertfusion import selfcheck
from tests import bundle_cache
from tests.conftest import REPO, RefusedImports

pytestmark = pytest.mark.unit

AVX2 = "model name\t: Some CPU\nflags\t\t: sse4_2 avx2 fma\n"
VNNI = "model name\t: Some CPU\nflags\t\t: sse4_2 avx2 fma avx512f avx512bw avx512_vnni\n"


def test_the_sources_are_the_export_code_and_the_core_modules_it_reaches() -> None:
    files = {str(p.relative_to(REPO)) for p in bundle_cache.source_files()}
    assert {"model_export/demo.py", "model_export/build.py", "tests/bundle_cache.py"} <= files
    core = "layers/core/python/alertfusion/"
    # imported inside functions (calibration decodes with the runtime's own audio path)
    assert {core + "audio.py", core + "features.py", core + "manifest.py"} <= files
    assert core + "__init__.py" in files
    # the serving side the build never imports does not invalidate the cache
    assert core + "engine.py" not in files and core + "jobs/store.py" not in files


def test_the_key_changes_with_the_cpu_features(monkeypatch: pytest.MonkeyPatch) -> None:
    read = selfcheck.cpu_info
    monkeypatch.setattr(selfcheck, "cpu_info", lambda: read(AVX2))
    avx2 = bundle_cache.key_inputs()
    assert bundle_cache.cache_key(avx2) == bundle_cache.cache_key(bundle_cache.key_inputs())
    monkeypatch.setattr(selfcheck, "cpu_info", lambda: read(VNNI))
    vnni = bundle_cache.key_inputs()
    assert vnni["cpu"]["features"] != avx2["cpu"]["features"]
    assert bundle_cache.cache_key(vnni) != bundle_cache.cache_key(avx2)


def test_the_key_changes_with_the_calibration_audio(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "a.wav").write_bytes(b"one")
    monkeypatch.setattr(bundle_cache, "CALIBRATION_AUDIO", tmp_path)
    before = bundle_cache.cache_key(bundle_cache.key_inputs())
    (tmp_path / "a.wav").write_bytes(b"two")
    assert bundle_cache.cache_key(bundle_cache.key_inputs()) != before


def test_a_missing_entry_that_cannot_be_built_names_the_make_target(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(bundle_cache.ROOT_ENV, str(tmp_path))
    monkeypatch.setattr(bundle_cache, "missing_toolchain", lambda: "torch is not installed")
    with pytest.raises(bundle_cache.CacheError) as err:
        bundle_cache.ensure()
    assert "make test-bundles" in str(err.value) and "torch is not installed" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_a_complete_entry_is_used_as_it_is(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(bundle_cache.ROOT_ENV, str(tmp_path))
    monkeypatch.setattr(bundle_cache, "missing_toolchain", lambda: "torch is not installed")
    entry = tmp_path / bundle_cache.cache_key(bundle_cache.key_inputs())
    entry.mkdir()
    (entry / bundle_cache.KEY_FILE).write_text("{}")
    assert bundle_cache.ensure() == entry


def test_refused_imports_fail_like_a_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "meta_path", [RefusedImports(frozenset({"nopkg"})), *sys.meta_path])
    for name in ("nopkg", "nopkg.sub"):
        with pytest.raises(ModuleNotFoundError, match="refused"):
            importlib.util.find_spec(name)
    assert importlib.util.find_spec("nopkg_other") is None  # not listed: the usual lookup
    assert importlib.util.find_spec("json") is not None


def test_pruning_removes_only_stale_entries_and_leftovers(tmp_path: Path) -> None:
    def entry(name: str, age_days: float) -> Path:
        path = tmp_path / name
        path.mkdir()
        (path / bundle_cache.KEY_FILE).write_text("{}")
        then = time.time() - age_days * 86_400
        os.utime(path / bundle_cache.KEY_FILE, (then, then))
        return path

    keep = entry("0123456789abcdef", 30)  # the one just built
    recent = entry("1123456789abcdef", 1)
    stale = entry("2123456789abcdef", bundle_cache.UNUSED_DAYS + 1)
    leftover = tmp_path / ".3123456789abcdef.partial-x1"
    leftover.mkdir()
    unrelated = tmp_path / "notes"
    unrelated.mkdir()
    bundle_cache._prune(tmp_path, keep=keep)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [keep.name, recent.name, unrelated.name]
    )
    assert not stale.exists() and not leftover.exists()
