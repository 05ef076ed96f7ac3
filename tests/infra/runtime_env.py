"""Simulated import environments: a site-packages directory holding only chosen
distributions from this venv (symlinked), and a probe that imports entry points in a clean
interpreter with nothing else on its path."""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

PROBE = r"""
import importlib, json, sys
results = {}
for spec in sys.argv[1:]:
    module_name, _, attr = spec.partition(":") if ":" in spec else spec.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        obj = getattr(module, attr)
        results[spec] = {"ok": callable(obj), "file": getattr(module, "__file__", None),
                         "type": type(obj).__name__}
    except BaseException as exc:  # the probe reports, the test decides
        results[spec] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:4000]}
results["__modules__"] = sorted({name.split(".")[0] for name in sys.modules})
print("PROBE" + json.dumps(results))
"""


INVOKE = r"""
import importlib, json, sys
module_name, _, attr = sys.argv[1].rpartition(".")
handler = getattr(importlib.import_module(module_name), attr)


class Context:  # what Lambda's runtime passes (Powertools and Mangum read these)
    function_name = "probe"
    function_version = "$LATEST"
    memory_limit_in_mb = 3008
    invoked_function_arn = "arn:aws:lambda:ap-northeast-2:111122223333:function:probe"
    aws_request_id = "00000000-0000-4000-8000-000000000000"
    log_group_name = "/aws/lambda/probe"
    log_stream_name = "probe"

    def get_remaining_time_in_millis(self):
        return 29000


responses = [handler(event, Context()) for event in json.loads(sys.stdin.read())]
modules = sorted({name.split(".")[0] for name in sys.modules})
print("PROBE" + json.dumps({"responses": responses, "__modules__": modules}))
"""


def requirement_names(requirements: Path) -> list[str]:
    names: list[str] = []
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.append(canonicalize_name(line.split("==", 1)[0].split("[", 1)[0]))
    return names


def top_levels(distribution: str) -> set[str]:
    """First path components of the distribution's installed files (packages, modules,
    bundled .libs directories, its dist-info)."""
    files = md.distribution(distribution).files or []
    return {
        str(path).split("/", 1)[0]
        for path in files
        if not str(path).startswith("..") and str(path).split("/", 1)[0] != "__pycache__"
    }


def link_site(distributions: list[str], dest: Path) -> Path:
    """A site-packages directory with exactly `distributions` (as installed in this venv)."""
    dest.mkdir(parents=True, exist_ok=True)
    site = Path(str(md.distribution("pip").locate_file("")))
    for name in distributions:
        for entry in top_levels(name):
            link = dest / entry
            if not link.exists():
                link.symlink_to(site / entry)
    return dest


def slim_botocore(site: Path, script: Path) -> dict[str, Any]:
    """Replay the image build's botocore trim on a `link_site` directory: its botocore
    becomes a copy (this venv's stays whole), trimmed by `script`, the build context's own
    functions/slim_botocore.py."""
    link = site / "botocore"
    installed = link.resolve()
    link.unlink()
    shutil.copytree(installed, link)  # bytecode and mtimes too: the imports stay cached
    spec = importlib.util.spec_from_file_location("slim_botocore_under_test", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report: dict[str, Any] = module.slim(site)
    return report


def probe(
    targets: list[str], *, pythonpath: list[Path], env: dict[str, str], cwd: Path
) -> dict[str, dict]:
    """Import each `module.attr` / `module:attr` in a fresh interpreter without site
    packages (`-S`): only `pythonpath` and the standard library are importable."""
    return _run([PROBE, *targets], pythonpath=pythonpath, env=env, cwd=cwd)


def invoke(
    target: str,
    events: list[dict],
    *,
    pythonpath: list[Path],
    env: dict[str, str],
    cwd: Path,
) -> dict[str, list]:
    """Call the Lambda handler `module.attr` with each event, one cold process as `probe`
    makes it; returns its `responses` and the top-level `__modules__` it imported."""
    return _run([INVOKE, target], pythonpath=pythonpath, env=env, cwd=cwd, stdin=json.dumps(events))


def _run(
    args: list[str],
    *,
    pythonpath: list[Path],
    env: dict[str, str],
    cwd: Path,
    stdin: str | None = None,
) -> dict:
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    clean.update(env)
    clean["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    proc = subprocess.run(
        [sys.executable, "-S", "-c", *args],
        cwd=cwd,
        env=clean,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE")), None)
    if line is None:
        raise AssertionError(f"probe crashed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return dict(json.loads(line[len("PROBE") :]))
