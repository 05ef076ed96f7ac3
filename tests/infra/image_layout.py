"""What an image would contain, without docker: parse a Dockerfile (the instructions this
project uses) and replay its COPY lines from a build context into a directory.

Only what functions/Dockerfile needs is supported; anything else (ADD, COPY --from, globs,
heredocs) raises, so the test can never silently reconstruct the wrong layout.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

#: ENV of the AWS Lambda Python base image that the Dockerfile refers to.
LAMBDA_BASE_ENV = {"LAMBDA_TASK_ROOT": "/var/task", "LAMBDA_RUNTIME_DIR": "/var/runtime"}
LAMBDA_BASE_WORKDIR = "/var/task"

_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


class UnsupportedDockerfile(ValueError):
    pass


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Copy:
    sources: list[str]
    dest: str
    line: int


@dataclass
class ImageSpec:
    """The resolved image of one build target."""

    base_image: str = ""
    base_platform: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = LAMBDA_BASE_WORKDIR
    copies: list[Copy] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    entrypoint: list[str] | None = None
    #: keyword of every instruction in build order (stage chain flattened)
    sequence: list[str] = field(default_factory=list)


def parse(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined; comments and parser directives dropped."""
    instructions: list[Instruction] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        pending += stripped
        keyword, _, args = pending.partition(" ")
        if "<<" in args and keyword.upper() == "RUN":
            raise UnsupportedDockerfile(f"line {start}: heredocs are not supported")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        pending = ""
    if pending:
        raise UnsupportedDockerfile("the Dockerfile ends inside a continuation line")
    return instructions


def _substitute(value: str, variables: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:
            raise UnsupportedDockerfile(f"undefined variable ${name} in {value!r}")
        return variables[name]

    return _VAR.sub(replace, value)


def _pairs(args: str) -> dict[str, str]:
    """`KEY=value KEY2="v 2"` (ENV/ARG), also `KEY` (ARG without default)."""
    result: dict[str, str] = {}
    for token in shlex.split(args):
        key, sep, value = token.partition("=")
        result[key] = value if sep else ""
    return result


def resolve(
    instructions: list[Instruction], *, target: str | None, build_args: dict[str, str]
) -> ImageSpec:
    """Follow the stage chain of `target` (default: the last stage) and resolve ARG/ENV."""
    global_args: dict[str, str] = {}
    stages: dict[str, tuple[str, list[Instruction]]] = {}
    order: list[str] = []
    current: list[Instruction] | None = None
    for ins in instructions:
        if ins.keyword == "FROM":
            parts = ins.args.split()
            name = parts[-1] if len(parts) >= 3 and parts[-2].upper() == "AS" else f"#{len(order)}"
            current = []
            stages[name] = (ins.args, current)
            order.append(name)
        elif current is None:
            if ins.keyword != "ARG":
                raise UnsupportedDockerfile(f"line {ins.line}: {ins.keyword} before FROM")
            for key, value in _pairs(ins.args).items():
                global_args[key] = build_args.get(key, value)
        else:
            current.append(ins)
    chosen = target or order[-1]
    if chosen not in stages:
        raise UnsupportedDockerfile(f"no stage named {chosen!r}")

    chain: list[tuple[str, list[Instruction]]] = []
    name = chosen
    while True:
        from_args, body = stages[name]
        chain.append((from_args, body))
        parent = [p for p in from_args.split() if not p.startswith("--")][0]
        if parent in stages:
            name = parent
            continue
        break
    chain.reverse()

    spec = ImageSpec()
    base_from = chain[0][0]
    flags = [p for p in base_from.split() if p.startswith("--")]
    spec.base_image = _substitute(
        [p for p in base_from.split() if not p.startswith("--")][0], global_args
    )
    for flag in flags:
        if flag.startswith("--platform="):
            spec.base_platform = _substitute(flag.split("=", 1)[1], global_args)
    spec.env = dict(LAMBDA_BASE_ENV)
    for _, body in chain:
        stage_args: dict[str, str] = {}
        for ins in body:
            # As in Docker: a global ARG is visible in a stage only once re-declared there,
            # and ENV wins over ARG.
            variables = {**stage_args, **spec.env}
            spec.sequence.append(ins.keyword)
            if ins.keyword == "ARG":
                for key, value in _pairs(ins.args).items():
                    default = value if value else global_args.get(key, "")
                    stage_args[key] = build_args.get(key, default)
            elif ins.keyword == "ENV":
                for key, value in _pairs(ins.args).items():
                    spec.env[key] = _substitute(value, variables)
            elif ins.keyword == "WORKDIR":
                spec.workdir = _substitute(ins.args, variables)
            elif ins.keyword == "COPY":
                tokens = shlex.split(ins.args)
                if any(t.startswith("--from") for t in tokens):
                    raise UnsupportedDockerfile(f"line {ins.line}: COPY --from is not supported")
                paths = [_substitute(t, variables) for t in tokens if not t.startswith("--")]
                if any(ch in p for p in paths for ch in "*?["):
                    raise UnsupportedDockerfile(f"line {ins.line}: globs are not supported")
                spec.copies.append(Copy(sources=paths[:-1], dest=paths[-1], line=ins.line))
            elif ins.keyword == "RUN":
                spec.runs.append(ins.args)
            elif ins.keyword in ("CMD", "ENTRYPOINT"):
                value = json.loads(ins.args)  # exec form only
                if ins.keyword == "CMD":
                    spec.cmd = list(value)
                else:
                    spec.entrypoint = list(value)
            elif ins.keyword in ("LABEL", "SHELL", "USER", "EXPOSE"):
                continue
            else:
                raise UnsupportedDockerfile(f"line {ins.line}: {ins.keyword} is not supported")
    return spec


def materialize(spec: ImageSpec, context: Path, root: Path) -> list[Path]:
    """Replay the COPY lines from `context` into `root` (image path /x -> root/x); returns
    the destination of each COPY, in order."""
    written: list[Path] = []
    for copy in spec.copies:
        dest = root / copy.dest.lstrip("/")
        for source in copy.sources:
            src = (context / source).resolve()
            if context.resolve() not in (src, *src.parents):
                raise UnsupportedDockerfile(f"COPY source {source!r} leaves the context")
            if not src.exists():
                raise FileNotFoundError(f"COPY source {source!r} is not in the build context")
            if src.is_dir():
                shutil.copytree(src, dest, dirs_exist_ok=True)
            else:
                target = dest / src.name if copy.dest.endswith("/") else dest
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target)
        written.append(dest)
    return written
