"""The bundles a deployment serves: the default (MODEL_BUNDLE) and named others (MODEL_BUNDLES).

A request or a job may name a bundle (`bundle`); no name is the default. Each bundle is
described from its manifest alone (`describe`: its recipe, labels and display names, alert
labels, whether it has a text model), so the API's light routes and the starter learn what a
bundle needs without loading its models. ``MODEL_BUNDLES`` is a comma-separated list of
``NAME=LOCATION`` (a directory or an s3:// URI); names are lower-case, and ``default`` is
the MODEL_BUNDLE's.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from alertfusion.errors import BundleError, ConfigError, InputError, ReasonCode

DEFAULT_BUNDLE = "default"
BUNDLE_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
_NAME = re.compile(BUNDLE_NAME_PATTERN)


@dataclass(frozen=True)
class LabelInfo:
    name: str
    display: str


@dataclass(frozen=True)
class BundleInfo:
    """What clients and the starter need to know of a bundle, read from its manifest."""

    name: str
    bundle_version: str
    recipe: str
    trained: bool
    labels: tuple[LabelInfo, ...]
    alert_labels: tuple[str, ...]
    aggregate: str
    #: a model reads the transcript: only then is Transcribe worth starting
    has_text_model: bool
    #: every model's label (a gate's too) -> its display name
    display_names: tuple[tuple[str, str], ...] = ()
    #: where the recipe takes its transcript: "model" (its own speech-to-text model: no
    #: Amazon Transcribe job) or "aws_transcribe"
    transcript_source: Literal["aws_transcribe", "model"] = "aws_transcribe"


def configured_bundles() -> dict[str, str]:
    """Bundle name -> location from the environment (MODEL_BUNDLE as ``default``, then
    MODEL_BUNDLES); empty when neither is set. CONFIG_INVALID for a malformed entry."""
    out: dict[str, str] = {}
    default = os.environ.get("MODEL_BUNDLE")
    if default:
        out[DEFAULT_BUNDLE] = default
    for item in filter(None, (x.strip() for x in os.environ.get("MODEL_BUNDLES", "").split(","))):
        name, sep, location = item.partition("=")
        name = name.strip()
        if not sep or not location.strip() or not _NAME.match(name):
            raise ConfigError(
                f"MODEL_BUNDLES: {item!r} is not NAME=LOCATION "
                f"(NAME matching {BUNDLE_NAME_PATTERN})"
            )
        if name in out:
            raise ConfigError(f"MODEL_BUNDLES: bundle {name!r} is named twice")
        out[name] = location.strip()
    return out


def bundle_location(name: str | None) -> str:
    """The location of bundle `name` (None: the default); UNKNOWN_BUNDLE naming the choices."""
    bundles = configured_bundles()
    key = name or DEFAULT_BUNDLE
    if key not in bundles:
        known = ", ".join(sorted(bundles)) or "none"
        raise InputError(
            f"no model bundle named {key!r} is served here (known: {known})",
            code=ReasonCode.UNKNOWN_BUNDLE,
        )
    return bundles[key]


def check_bundle_name(name: str | None) -> str | None:
    """`name` if this deployment serves it (None stays None: the default); UNKNOWN_BUNDLE
    otherwise. ``default`` is normalised to None."""
    if name is None or name == DEFAULT_BUNDLE:
        return None
    bundle_location(name)
    return name


def describe(name: str | None = None) -> BundleInfo:
    """Bundle `name` (None: the default) described from its manifest (cached per location)."""
    key = name or DEFAULT_BUNDLE
    return _describe(key, bundle_location(key))


def describe_all() -> list[BundleInfo]:
    return [_describe(name, location) for name, location in configured_bundles().items()]


#: what a function without the bundle (the deployed starter) is told of the default bundle:
#: "false" when its recipe has no text model (infra reads the baked bundle's manifest)
TEXT_MODEL_ENV = "BUNDLE_TEXT_MODEL"


def _default_not_configured(name: str | None, bundles: dict[str, str]) -> bool:
    """`name` is the default bundle and this process has no location for it: a starter
    deployed without the baked bundle (named S3 bundles may still be configured)."""
    return name in (None, DEFAULT_BUNDLE) and DEFAULT_BUNDLE not in bundles


def has_text_model(name: str | None) -> bool:
    """Whether bundle `name` (None: the default) reads a transcript. Where the default bundle
    is not configured (a starter deployed without the baked bundle), BUNDLE_TEXT_MODEL says
    it for the default; without it, or for a named bundle where none is configured, today's
    system is assumed: it has one."""
    bundles = configured_bundles()
    if _default_not_configured(name, bundles):
        flag = os.environ.get(TEXT_MODEL_ENV, "true").strip().lower()
        if flag not in ("true", "false"):
            raise ConfigError(f"{TEXT_MODEL_ENV} must be true or false, not {flag!r}")
        return flag == "true"
    if not bundles:
        return True
    return describe(name).has_text_model


def model_transcribes(name: str | None) -> bool:
    """Whether bundle `name` (None: the default) takes its transcript from its own
    speech-to-text model, read from its manifest. False where the bundle is not configured
    (a starter deployed without its baked default bundle: TRANSCRIPT_SOURCE, set from it at
    synth, says it there)."""
    bundles = configured_bundles()
    if not bundles or _default_not_configured(name, bundles):
        return False
    return describe(name).transcript_source == "model"


def manifest_has_text_model(path: Path) -> bool | None:
    """Whether the bundle manifest at `path` has a transcript model; None when the file is
    not a manifest (for infra, which sets BUNDLE_TEXT_MODEL from the bundle it bakes)."""
    from alertfusion.manifest_v2 import as_v2, parse_manifest

    try:
        spec = as_v2(parse_manifest(json.loads(path.read_bytes()), str(path)))
    except (OSError, ValueError, BundleError):
        return None
    return any(m.source == "transcript" for m in spec.recipe.models.values())


def manifest_transcript_source(path: Path) -> Literal["aws_transcribe", "model"] | None:
    """Where the recipe of the bundle manifest at `path` takes its transcript: "model" (its
    own speech-to-text model) or "aws_transcribe"; None when the file is not a manifest (for
    infra, which sets TRANSCRIPT_SOURCE from the bundle it bakes)."""
    from alertfusion.manifest_v2 import as_v2, parse_manifest

    try:
        spec = as_v2(parse_manifest(json.loads(path.read_bytes()), str(path)))
    except (OSError, ValueError, BundleError):
        return None
    return _source(spec.recipe.transcript_source)


def _source(transcript_source: str) -> Literal["aws_transcribe", "model"]:
    return "model" if transcript_source.startswith("model:") else "aws_transcribe"


@lru_cache(maxsize=32)
def _describe(name: str, location: str) -> BundleInfo:
    from alertfusion.manifest import MANIFEST_FILE
    from alertfusion.manifest_v2 import as_v2, parse_manifest

    raw = _read_manifest(location, MANIFEST_FILE)
    spec = as_v2(parse_manifest(raw, f"{location}/{MANIFEST_FILE}"))
    recipe = spec.recipe
    return BundleInfo(
        name=name,
        bundle_version=spec.bundle_version,
        recipe=recipe.name,
        trained=spec.trained,
        labels=tuple(LabelInfo(label.name, label.shown) for label in recipe.labels),
        alert_labels=tuple(recipe.decision.alert_labels),
        aggregate=recipe.decision.aggregate,
        has_text_model=any(m.source == "transcript" for m in recipe.models.values()),
        display_names=tuple(
            {x.name: x.shown for m in recipe.models.values() for x in m.labels}.items()
        ),
        transcript_source=_source(recipe.transcript_source),
    )


def _read_manifest(location: str, file: str) -> object:
    from alertfusion.bundle import S3_SCHEME

    try:
        if location.startswith(S3_SCHEME):
            from alertfusion import aws

            bucket, _, prefix = location.removeprefix(S3_SCHEME).partition("/")
            key = f"{prefix.rstrip('/')}/{file}"
            try:
                body = aws.s3().get_object(Bucket=bucket, Key=key)["Body"].read()
            except Exception as exc:
                if aws.error_code(exc) is None:
                    raise
                # missing or forbidden: BUNDLE_NOT_FOUND; anything else a TransientError
                from alertfusion.bundle import s3_bundle_error

                raise s3_bundle_error(exc, location, key) from exc
        else:
            body = (Path(location) / file).read_bytes()
        return json.loads(body)
    except (OSError, ValueError) as exc:
        raise BundleError(
            f"the manifest of bundle {location} is not readable: {exc}",
            code=ReasonCode.BUNDLE_NOT_FOUND,
        ) from exc


def reset_catalog() -> None:
    """Forget the cached descriptions (tests, after rebuilding a bundle)."""
    _describe.cache_clear()
