"""Fixtures every tier shares: repository paths, AWS isolation, tiny model bundles, and the
import block of `make test-fast`."""

from __future__ import annotations

import importlib.abc
import os
import shutil
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
FIXTURES = REPO / "tests" / "fixtures"
DEMO_BUNDLE = REPO / "build" / "models" / "demo"
# a quota test counts requests within one UTC clock hour and takes well under this long
QUOTA_TEST_SECONDS = 90

# No test may reach real AWS: fake credentials and a fixed region before any boto3 client
# exists. Tests that need AWS use moto (the `aws` fixture in tests/integration/conftest.py).
for _key, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "ap-northeast-2",
    "AWS_REGION": "ap-northeast-2",
    "POWERTOOLS_TRACE_DISABLED": "1",
    "POWERTOOLS_METRICS_NAMESPACE": "alertfusion-tests",
    "POWERTOOLS_SERVICE_NAME": "alertfusion-tests",
    "HF_HUB_OFFLINE": "1",
}.items():
    os.environ[_key] = _value
os.environ.pop("AWS_PROFILE", None)


#: comma-separated top-level modules this test process refuses to import (`make test-fast`
#: sets torch, transformers, librosa, sentencepiece: the unit tier must run without them)
REFUSE_IMPORTS_ENV = "TESTS_REFUSE_IMPORTS"


class RefusedImports(importlib.abc.MetaPathFinder):
    """Fails every import of the listed packages (ModuleNotFoundError, so an optional import
    falls back as it would without the package installed)."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> None:
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(
                f"import of {fullname} refused ({REFUSE_IMPORTS_ENV}): this tier must run "
                "without it; a test that needs it belongs to the export tier (tests/export/)",
                name=fullname,
            )
        return None


def _refuse_imports() -> None:
    names = frozenset(n.strip() for n in os.environ.get(REFUSE_IMPORTS_ENV, "").split(","))
    names -= {""}
    if not names:
        return
    loaded = sorted(m for m in sys.modules if m.partition(".")[0] in names)
    if loaded:
        raise RuntimeError(f"{REFUSE_IMPORTS_ENV}: {loaded} were imported before tests/conftest.py")
    sys.meta_path.insert(0, RefusedImports(names))


_refuse_imports()


@pytest.fixture
def clear_of_the_hour() -> None:
    """Quotas count per UTC clock hour (and day): a quota test that would start within
    QUOTA_TEST_SECONDS of the hour's end waits for the next hour, so the window it counts in
    cannot turn while it runs. Windows turning are tested with explicit times instead."""
    now = datetime.now(UTC)
    left = 3600 - (now.minute * 60 + now.second + now.microsecond / 1e6)
    if left < QUOTA_TEST_SECONDS:
        time.sleep(left + 0.5)


@pytest.fixture(scope="session")
def tiny_bundle_cache() -> Path:
    """This checkout's entry of the tiny-bundle cache (tests/bundle_cache.py), built first when
    missing and this process may import PyTorch."""
    from tests.bundle_cache import CacheError, ensure

    try:
        return ensure()
    except CacheError as exc:
        pytest.fail(str(exc), pytrace=False)


def _session_copy(entry: Path, name: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of one cached bundle and its demo checkpoints for this session: no test can
    change the cache."""
    out = tmp_path_factory.mktemp("bundles")
    for part in (name, f"{name}-checkpoints"):
        shutil.copytree(entry / part, out / part)
    return out / name


@pytest.fixture(scope="session")
def tiny_bundle(tiny_bundle_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny fp32 bundle made by `model_export demo --size tiny --quantize none`, its demo
    checkpoints beside it (`model_export.demo.demo_checkpoint_dir`)."""
    return _session_copy(tiny_bundle_cache, "tiny-fp32", tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_bundle_int8(tiny_bundle_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny int8 bundle (static QDQ audio models, dynamic int8 text model), built on this
    CPU, its demo checkpoints beside it."""
    return _session_copy(tiny_bundle_cache, "tiny-int8", tmp_path_factory)


@pytest.fixture(scope="session")
def offline_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny demo bundle of recipes/emergency-voice-offline.json (today's system plus an
    untrained CTC speech-to-text model: its recipe's transcript_source is `model:stt`), built
    on the session's tiny bundle. Shared: copy it before changing it."""
    from model_export.progress import Progress
    from model_export.recipe_build import load_recipe
    from model_export.stt_demo import build_offline_demo

    out = tmp_path_factory.mktemp("offline") / "bundle"
    build_offline_demo(
        load_recipe(REPO / "recipes" / "emergency-voice-offline.json"), out, size="tiny",
        seed=0, quantize="none", threshold=0.9, calibration_audio=SAMPLES, fp32_fallback=False,
        force=False, progress=Progress(), checkpoints_out=None, base=tiny_bundle,
    )  # fmt: skip
    return out
