"""One cold start: a fresh process that loads a path and answers one request, then exits.

    python -m bench.cold ours|seed LOCATION CLIP TEXT [sequential]

Prints one JSON line: the CLOCK_MONOTONIC time of the verdict (the parent subtracts the time
it started the process, so interpreter start-up counts), each phase's milliseconds, the
verdict and the peak RSS. Ours runs the bundle's self-check before its first verdict, as the
serving functions do.
"""

from __future__ import annotations

import time

_T0 = time.monotonic()

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402


def main(argv: list[str]) -> int:
    from bench.worker import peak_rss_mb

    name, location, clip, text = argv[:4]
    sequential = argv[4:] == ["sequential"]  # sessions one after the other (bench sessions)
    data = Path(clip).read_bytes()
    phases: dict[str, float] = {}
    t = time.monotonic()
    if name == "ours":
        from alertfusion.engine import Engine

        phases["import_ms"] = (time.monotonic() - t) * 1e3
        t = time.monotonic()
        engine = Engine.from_bundle(location, gate="none")
        phases["bundle_ms"] = (time.monotonic() - t) * 1e3
        t = time.monotonic()
        if sequential:
            engine._text_encoder()
            engine.sessions.create_all()
        else:
            engine.warm_up()
        phases["sessions_ms"] = (time.monotonic() - t) * 1e3
        if engine.manifest.golden is not None:
            # what the serving functions do before their first verdict (alertfusion.selfcheck)
            t = time.monotonic()
            engine.self_check()
            phases["selfcheck_ms"] = (time.monotonic() - t) * 1e3
        t = time.monotonic()
        result = engine.classify(data, text=text)
        phases["first_verdict_ms"] = (time.monotonic() - t) * 1e3
        label = result.label
        phases.update({f"session_{k}_ms": v for k, v in engine.sessions.created_ms.items()})
    else:
        import numpy as np

        from bench.seed import SeedPath

        phases["import_ms"] = (time.monotonic() - t) * 1e3
        t = time.monotonic()
        seed = SeedPath(Path(location))
        phases["bundle_ms"] = (time.monotonic() - t) * 1e3
        t = time.monotonic()
        out = seed.classify(data, text)
        phases["first_verdict_ms"] = (time.monotonic() - t) * 1e3
        label = str(int(np.argmax(out.fused.max(axis=0))))
    done = time.monotonic()
    phases["in_process_ms"] = (done - _T0) * 1e3
    print(
        json.dumps(
            {
                "verdict_at": done,
                "phases": phases,
                "label": label,
                "peak_rss_mb": peak_rss_mb(),
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
