"""`make lock`: the hash-pinned lock files (locks/*.txt) from the requirements*.txt pins.

requirements*.txt stay what people edit: the direct pins. The locks add every transitive
dependency and the sha256 of every file each pinned release publishes, so `pip install
--require-hashes` installs exactly those bytes or stops:

* locks/pip.txt      pip itself, installed first;
* locks/runtime.txt  requirements.txt (what the image ships), installed with --no-deps: the
                     list is complete on purpose (see requirements.txt);
* locks/export.txt   requirements-export.txt's closure minus the runtime (model_export/);
* locks/dev.txt      everything else requirements-dev.txt needs (tests, references, tools).

One resolution (pip-compile over requirements.txt + requirements-dev.txt, the dev file
including the export file) gives every version, so the three layers always agree; the
export/dev split follows the installed metadata of the environment `make setup` made.
torch resolves through this machine's pip configuration (the CPU build; elsewhere
`make lock TORCH_INDEX_URL=...`), so its hash is that of the CPU wheel pip installs.

    python tools/lockfiles.py --pip-compile PATH [--extra-index-url URL]
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
LOCKS = REPO / "locks"
RUNTIME = REPO / "requirements.txt"
EXPORT = REPO / "requirements-export.txt"
DEV = REPO / "requirements-dev.txt"
#: the pip every environment installs its locks with
PIP_VERSION = "26.3"

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


@dataclass(frozen=True)
class Entry:
    name: str  # canonical
    version: str
    text: str  # the pin line and its hash lines, as pip-compile wrote them


def parse_lock(text: str) -> dict[str, Entry]:
    """pip-compile output (--generate-hashes, annotations on their own lines) by name."""
    entries: dict[str, Entry] = {}
    block: list[str] = []
    for line in [*text.splitlines(), ""]:
        if block and not line.startswith((" ", "\t")):
            match = _PIN.match(block[0])
            if match is None:
                raise ValueError(f"not a pin: {block[0]!r}")
            name = canonicalize_name(match.group(1))
            body = [b for b in block if not b.strip().startswith("#")]
            body[-1] = body[-1].rstrip(" \\")
            entries[name] = Entry(name, match.group(2), "\n".join(body))
            block = []
        if line and not line.startswith("#") and (block or _PIN.match(line)):
            block.append(line)
    return entries


def direct_pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = _PIN.match(line.strip())
        if match:
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def installed_closure(names: list[str]) -> set[str]:
    """`names` and everything they require in this environment (its markers)."""
    env = {key: str(value) for key, value in default_environment().items()}
    seen: set[str] = set()
    todo: list[tuple[str, tuple[str, ...]]] = [(name, ()) for name in names]
    while todo:
        name, extras = todo.pop()
        canonical = canonicalize_name(name)
        if canonical in seen and not extras:
            continue
        seen.add(canonical)
        for line in md.distribution(name).requires or []:
            req = Requirement(line)
            if req.marker is None or any(
                req.marker.evaluate({**env, "extra": extra}) for extra in (*extras, "")
            ):
                todo.append((req.name, tuple(req.extras)))
    return seen


def compile_all(pip_compile: str, extra_index_url: str | None) -> dict[str, Entry]:
    with tempfile.TemporaryDirectory(prefix="lock-") as tmp:
        source = Path(tmp) / "all.in"
        source.write_text(f"-r {RUNTIME}\n-r {DEV}\n")
        out = Path(tmp) / "all.txt"
        extra = ["--extra-index-url", extra_index_url] if extra_index_url else []
        subprocess.run(  # noqa: S603 - fixed argv
            [
                pip_compile,
                "--quiet",
                "--generate-hashes",
                "--allow-unsafe",
                "--strip-extras",
                "--no-emit-index-url",
                "--no-emit-find-links",
                "--no-header",
                *extra,
                "-o",
                str(out),
                str(source),
            ],
            check=True,
        )
        return parse_lock(out.read_text())


def compile_pip(pip_compile: str) -> Entry:
    with tempfile.TemporaryDirectory(prefix="lock-pip-") as tmp:
        source = Path(tmp) / "pip.in"
        source.write_text(f"pip=={PIP_VERSION}\n")
        out = Path(tmp) / "pip.txt"
        subprocess.run(  # noqa: S603 - fixed argv
            [
                pip_compile,
                "--quiet",
                "--generate-hashes",
                "--allow-unsafe",
                "--strip-extras",
                "--no-emit-index-url",
                "--no-emit-find-links",
                "--no-header",
                "-o",
                str(out),
                str(source),
            ],
            check=True,
        )
        return parse_lock(out.read_text())["pip"]


def split(entries: dict[str, Entry]) -> dict[str, list[Entry]]:
    """The resolution in three layers: runtime, export, dev."""
    runtime_pins = direct_pins(RUNTIME)
    for name, version in runtime_pins.items():
        locked = entries[name].version
        if locked != version:
            raise SystemExit(f"the resolution moved {name} from {version} to {locked}")
    export = installed_closure(list(direct_pins(EXPORT))) - set(runtime_pins)
    layers: dict[str, list[Entry]] = {"runtime": [], "export": [], "dev": []}
    for name in sorted(entries):
        layer = "runtime" if name in runtime_pins else "export" if name in export else "dev"
        layers[layer].append(entries[name])
    missing = set(runtime_pins) - {e.name for e in layers["runtime"]}
    if missing:
        raise SystemExit(f"not in the resolution: {sorted(missing)}")
    return layers


_HEADERS = {
    "pip": "pip itself: installed first, `pip install --require-hashes -r locks/pip.txt`.",
    "runtime": "requirements.txt with hashes: `pip install --require-hashes --no-deps -r "
    "locks/runtime.txt`\n# (complete on purpose, like requirements.txt; the image's pins).",
    "export": "requirements-export.txt's closure minus the runtime (model_export/); install "
    "it with the\n# runtime and dev locks: `pip install --require-hashes -r locks/runtime.txt "
    "-r locks/export.txt -r locks/dev.txt`.",
    "dev": "requirements-dev.txt's closure minus the runtime and export locks (tests, "
    "references, tools).",
}


def write(layer: str, entries: list[Entry]) -> Path:
    path = LOCKS / f"{layer}.txt"
    header = (
        "# Generated by `make lock` (tools/lockfiles.py) from requirements*.txt: do not edit.\n"
        f"# {_HEADERS[layer]}\n"
    )
    path.write_text(header + "\n".join(e.text for e in entries) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pip-compile", required=True, help="pip-tools' pip-compile")
    parser.add_argument("--extra-index-url", default=None, help="e.g. PyTorch's CPU index")
    parser.add_argument(
        "--resolved", type=Path, default=None, help="reuse a pip-compile output of the same input"
    )
    args = parser.parse_args(argv)
    LOCKS.mkdir(exist_ok=True)
    if args.resolved is not None:
        resolved = parse_lock(args.resolved.read_text())
    else:
        resolved = compile_all(args.pip_compile, args.extra_index_url or None)
    layers = split(resolved)
    written = [write("pip", [compile_pip(args.pip_compile)])]
    written += [write(layer, entries) for layer, entries in layers.items()]
    for path in written:
        count = sum(1 for line in path.read_text().splitlines() if _PIN.match(line))
        sys.stdout.write(f"{path.relative_to(REPO)}: {count} pins\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
