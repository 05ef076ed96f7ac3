"""The two paths the benchmark compares, behind one interface: load once, classify bytes.

`ours`: this engine on the int8 bundle, the gate off (every model runs). `seed`: bench.seed
(PyTorch + librosa + scikit-image, text padded to 60). Both take the same bytes and text.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol


class BenchPath(Protocol):
    def classify(self, data: bytes, text: str | None) -> Any: ...

    def close(self) -> None: ...


class Ours:
    def __init__(
        self, bundle: Path, *, session: dict[str, Any] | None = None, **tuning: Any
    ) -> None:
        from alertfusion.engine import Engine, Tuning
        from alertfusion.sessions import SessionOptions

        options = Tuning(**tuning, session=SessionOptions(**(session or {})))
        self.engine = Engine.from_bundle(bundle, gate="none", tuning=options)
        self.engine.warm_up()

    def classify(self, data: bytes, text: str | None) -> Any:
        return self.engine.classify(data, text=text)

    def close(self) -> None:
        self.engine.close()


class Seed:
    """The seed path with PyTorch's intra-op threads set to whichever of 1 or 2 answered a probe
    request faster: the original server ran with PyTorch's default (one thread per core), which
    on a busy machine is much slower than one thread (OpenMP threads waiting for each other),
    and the comparison should not profit from that."""

    def __init__(
        self, checkpoints: Path, probe: bytes | None = None, text: str | None = None
    ) -> None:
        import time

        import torch

        from bench.seed import SeedPath

        self.path = SeedPath(checkpoints)
        self.threads = torch.get_num_threads()
        if probe is not None:
            best = None
            for threads in sorted({1, torch.get_num_threads()}):
                torch.set_num_threads(threads)
                self.path.classify(probe, text)
                times = []
                for _ in range(3):
                    start = time.perf_counter()
                    self.path.classify(probe, text)
                    times.append(time.perf_counter() - start)
                if best is None or min(times) < best[0]:
                    best = (min(times), threads)
            assert best is not None
            self.threads = best[1]
            torch.set_num_threads(self.threads)

    def classify(self, data: bytes, text: str | None) -> Any:
        return self.path.classify(data, text)

    def close(self) -> None:
        pass


def make_path(name: str, location: str, **options: Any) -> BenchPath:
    if name == "ours":
        return Ours(Path(location), **options)
    if name == "seed":
        probe = options.get("probe")
        return Seed(
            Path(location),
            probe=Path(probe).read_bytes() if probe else None,
            text=options.get("text"),
        )
    raise ValueError(f"unknown path {name!r}")


def child_env(name: str) -> dict[str, str]:
    """The environment of a path's processes. Ours runs with one OpenBLAS thread (what the
    engine's deployments set); the seed keeps the library defaults the original server had.
    Bytecode may be cached (a deployed image has it compiled) and numba gets a writable cache,
    so a cold start means a fresh process with warm caches, for both paths alike."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault(
        "NUMBA_CACHE_DIR",
        str(Path(__file__).resolve().parent.parent / "build" / "bench" / "numba-cache"),
    )
    if name == "ours":
        env["OPENBLAS_NUM_THREADS"] = "1"
    else:
        env.pop("OPENBLAS_NUM_THREADS", None)
    return env
