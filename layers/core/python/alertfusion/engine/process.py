"""The process-wide engine of the serving functions: made once from the settings, checked on
this CPU before it serves (alertfusion.selfcheck)."""

from __future__ import annotations

import threading

from alertfusion.engine.core import Engine

_engine: Engine | None = None
_engine_lock = threading.Lock()
#: the engines of the other bundles the deployment serves (alertfusion.catalog), by name
_named: dict[str, Engine] = {}


def get_engine(bundle: str | None = None) -> Engine:
    """The process-wide engine, made on first call from EngineSettings (MODEL_BUNDLE,
    BUNDLE_CACHE_DIR, FUSION_GATE, ORT_THREADS and the limits). With SELFCHECK (the default)
    the bundle's golden set runs on this CPU first, which creates the sessions; without it
    they stay lazy (`warm_up()` creates them). `bundle` names another bundle of
    MODEL_BUNDLES (alertfusion.catalog; UNKNOWN_BUNDLE if none has that name), whose engine
    is made the same way once."""
    global _engine
    if bundle is not None and bundle != "default":
        return _named_engine(bundle)
    engine = _engine
    if engine is None:
        with _engine_lock:
            if _engine is None:
                _engine = _make_engine(None)
            engine = _engine
    return engine


def _named_engine(bundle: str) -> Engine:
    engine = _named.get(bundle)
    if engine is None:
        with _engine_lock:
            engine = _named.get(bundle)
            if engine is None:
                from alertfusion.catalog import bundle_location

                engine = _named[bundle] = _make_engine(bundle_location(bundle))
    return engine


def _make_engine(location: str | None) -> Engine:
    from alertfusion.settings import engine_settings

    s = engine_settings()
    engine = Engine.from_bundle(
        location or s.model_bundle,
        cache_dir=s.bundle_cache_dir,
        gate=s.fusion_gate if location is None else None,
        threads=s.ort_threads,
        min_audio_seconds=s.min_audio_seconds,
        max_audio_seconds=s.max_audio_seconds,
        max_text_chars=s.max_text_chars,
        min_window_seconds=s.min_window_seconds,
    )
    if s.selfcheck:
        from alertfusion.selfcheck import check_before_serving

        engine.readiness = check_before_serving(engine)
    return engine


def current_engine() -> Engine | None:
    """The process-wide engine if `get_engine` made it, without making one."""
    return _engine


def recheck_engine() -> None:
    """Run the process-wide engine's self-check again (a sandbox restored from a snapshot
    taken on another CPU): it serves, falls back or refuses by what this CPU gives."""
    engine = _engine
    if engine is None or engine.readiness is None:
        return
    from alertfusion.selfcheck import check_before_serving

    engine.unready = None
    engine.readiness = check_before_serving(engine)


def reset_engine() -> None:
    """Forget the process-wide engine (tests, or after changing the settings)."""
    global _engine
    with _engine_lock:
        for engine in [_engine, *_named.values()]:
            if engine is not None:
                engine.close()
        _engine = None
        _named.clear()
