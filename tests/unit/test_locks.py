"""The hash locks (locks/*.txt, `make lock`) agree with the requirements*.txt pins people edit,
and `make image-deps` asks pip for the wheels the base image's glibc accepts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.version import Version

from infra.build_layer import pinned_versions
from infra.image_deps import platform_tags
from tests.conftest import REPO

pytestmark = pytest.mark.unit

LOCKS = {name: REPO / "locks" / f"{name}.txt" for name in ("pip", "runtime", "export", "dev")}
REQUIREMENTS = {
    "runtime": REPO / "requirements.txt",
    "export": REPO / "requirements-export.txt",
    "dev": REPO / "requirements-dev.txt",
}


def _entries(path: Path) -> dict[str, int]:
    """pin line -> number of hashes under it."""
    entries: dict[str, int] = {}
    current = None
    for line in path.read_text().splitlines():
        if re.match(r"^[A-Za-z0-9]", line):
            current = line.split()[0]
            entries[current] = 0
        elif current and "--hash=sha256:" in line:
            entries[current] += 1
    return entries


def test_the_runtime_lock_is_requirements_txt_with_hashes() -> None:
    assert pinned_versions(LOCKS["runtime"]) == pinned_versions(REQUIREMENTS["runtime"])


@pytest.mark.parametrize("layer", ["export", "dev"])
def test_every_direct_pin_is_locked_at_its_version(layer: str) -> None:
    locked: dict[str, str] = {}
    for path in LOCKS.values():
        locked.update(pinned_versions(path))
    for name, version in pinned_versions(REQUIREMENTS[layer]).items():
        assert name in locked, f"{name} is pinned in {REQUIREMENTS[layer].name} but not locked"
        # torch==2.13.0 resolves to the CPU build, 2.13.0+cpu: same release, local label
        assert Version(locked[name]).public == Version(version).public, name


def test_every_locked_pin_has_hashes_and_is_locked_once() -> None:
    seen: dict[str, str] = {}
    for layer, path in LOCKS.items():
        for pin, hashes in _entries(path).items():
            assert hashes >= 1, f"{path.name}: {pin} has no hash"
            name = pin.split("==")[0].lower()
            assert name not in seen, f"{name} is in {seen.get(name)} and {layer}"
            seen[name] = layer
    assert "pip" in pinned_versions(LOCKS["pip"])


def test_image_deps_accepts_exactly_the_manylinux_tags_of_the_base_glibc() -> None:
    tags = platform_tags("aarch64", (2, 34))
    assert tags[0] == "manylinux_2_34_aarch64" and tags[-1] == "manylinux2014_aarch64"
    assert "manylinux_2_28_aarch64" in tags and "manylinux_2_17_aarch64" in tags
    assert not any(t.startswith("manylinux_2_35") for t in tags)
    # Amazon Linux 2 (Lambda's Python 3.11): nothing newer than glibc 2.26
    assert "manylinux_2_28_x86_64" not in platform_tags("x86_64", (2, 26))
