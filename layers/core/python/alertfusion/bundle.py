"""The model bundle: a directory or an s3:// URI -> a verified local directory and its manifest.

A bundle on S3 is downloaded once per machine into ``BUNDLE_CACHE_DIR``, under a directory
named by the sha256 of its manifest (content-addressed: a new bundle at the same URI gets a new
directory, and an unchanged one is never downloaded again, even by a restarted process). Files
arrive in a temporary directory next to it and are checked against the manifest's sums before
one atomic rename publishes them, so a crash or a concurrent process can never leave a
half-written bundle where the engine looks. Every load checks every file's sha256 (local
directories too): the runtime refuses a bundle whose files do not match their sums.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from alertfusion.aws import S3_DENIED_CODES, S3_NOT_FOUND_CODES, error_code
from alertfusion.bundle_files import check_file_sums
from alertfusion.errors import BundleError, ReasonCode, TransientError
from alertfusion.manifest import MANIFEST_FILE, Manifest, OnnxModel, TextPreprocessing

if TYPE_CHECKING:
    from alertfusion.manifest import GoldenSet
    from alertfusion.manifest_v2 import ManifestV2

#: the recipe name of today's system (alertfusion.recipe.v1.RECIPE_NAME)
EMERGENCY_RECIPE = "emergency-voice"

S3_SCHEME = "s3://"
#: a manifest larger than this is not a manifest (they are a few kB)
MAX_MANIFEST_BYTES = 1 << 20
_CHUNK = 1 << 20
#: S3 error codes that mean "there is nothing (readable) at that URI"
_NOT_FOUND_CODES = S3_NOT_FOUND_CODES | S3_DENIED_CODES | {"NoSuchBucket"}


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on the local filesystem.

    `spec` is its manifest as v2 (a v1 manifest mapped onto v2, made when first asked for: a
    v1 bundle served on the optimised path never needs it); `legacy` the v1 manifest of
    today's system (read from a v1 bundle, or the view of a v2 recipe that is exactly that
    system), which the engine's optimised path serves; None for any other recipe."""

    directory: Path
    #: where it came from (a directory or an s3:// URI), for messages
    source: str
    legacy: Manifest | None = None
    #: the v2 manifest read from a v2 bundle (None for v1: `spec` maps the legacy one)
    v2: ManifestV2 | None = field(default=None, repr=False)

    @property
    def schema_version(self) -> int:
        """The manifest file's schema version (1 or 2)."""
        return 1 if self.v2 is None else 2

    @cached_property
    def spec(self) -> ManifestV2:
        if self.v2 is not None:
            return self.v2
        from alertfusion.manifest_v2 import from_v1

        assert self.legacy is not None  # a v1 bundle always has its manifest
        return from_v1(self.legacy)

    @property
    def entries(self) -> dict[str, OnnxModel]:
        """The model files by model name."""
        if self.v2 is None:
            assert self.legacy is not None
            return self.legacy.model_entries()
        return self.v2.model_entries()

    @property
    def golden(self) -> GoldenSet | None:
        return self.v2.golden if self.v2 is not None else self.manifest.golden

    @property
    def text(self) -> TextPreprocessing | None:
        return self.v2.text if self.v2 is not None else self.manifest.text

    @property
    def bundle_version(self) -> str:
        return self.v2.bundle_version if self.v2 is not None else self.manifest.bundle_version

    @property
    def recipe_name(self) -> str:
        return self.v2.recipe.name if self.v2 is not None else EMERGENCY_RECIPE

    @property
    def default_gate(self) -> Literal["binary", "none"]:
        """The gate the bundle's decision asks for (v1: the manifest's fusion.gate)."""
        if self.v2 is None:
            return self.manifest.fusion.gate
        return "binary" if self.v2.recipe.decision.gate is not None else "none"

    @property
    def text_overrides_gate(self) -> bool:
        return self.v2 is not None and self.v2.recipe.decision.text_overrides_gate

    @property
    def sample_rate(self) -> int:
        return (
            self.v2.recipe.sample_rate if self.v2 is not None else self.manifest.audio.sample_rate
        )

    def output_kind(self, name: str) -> str:
        """How model `name`'s output reads (logits for every model of a v1 bundle)."""
        return self.v2.recipe.models[name].output.kind if self.v2 is not None else "logits"

    def output_width(self, name: str) -> int:
        """The width of model `name`'s output."""
        if self.v2 is not None:
            return self.v2.recipe.models[name].output_width
        return len(self.entries[name].labels)

    @property
    def manifest(self) -> Manifest:
        """The v1 manifest (today's system); BUNDLE_INVALID for another recipe, whose
        readers use `spec`."""
        if self.legacy is None:
            raise BundleError(
                f"bundle {self.bundle_version} serves recipe {self.recipe_name}, "
                "not the emergency-voice system this reader knows",
                code=ReasonCode.BUNDLE_INVALID,
            )
        return self.legacy

    def path(self, file: str) -> Path:
        return self.directory / file


def load_bundle(
    location: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None
) -> Bundle:
    """Resolve `location` (a bundle directory or an ``s3://bucket/prefix`` URI) to a local
    directory, validate its manifest and check every file's sha256.

    Raises BundleError: BUNDLE_NOT_FOUND (no manifest there, unknown bucket or key, access
    denied), BUNDLE_INVALID (unreadable or invalid manifest, a file missing or not matching its
    sum); TransientError (UPSTREAM_UNAVAILABLE) when S3 fails in a way a retry may fix.
    """
    text = os.fspath(location)
    if text.startswith(S3_SCHEME):
        cache = Path(cache_dir) if cache_dir is not None else Path(_default_cache_dir())
        directory = fetch_s3_bundle(text, cache)
    else:
        directory = Path(text)
        if not directory.is_dir():
            raise BundleError(
                f"model bundle {text} is not a directory (run `make setup` to build the demo "
                "bundle, or set MODEL_BUNDLE)",
                code=ReasonCode.BUNDLE_NOT_FOUND,
            )
    return open_bundle(directory, source=text)


def _is_v2(raw: bytes) -> bool:
    """Whether a manifest's bytes are schema v2 (a v1 manifest never imports the recipes)."""
    try:
        found = json.loads(raw)
    except ValueError:
        return False
    return isinstance(found, dict) and found.get("schema_version") == 2


def open_bundle(directory: Path, *, source: str | None = None) -> Bundle:
    """The bundle in a local directory: its manifest (v1 or v2) validated, every file's
    sha256 checked, and for v2 the recipe's graph checked against the model files' shapes."""
    path = directory / MANIFEST_FILE
    try:
        head = path.read_bytes()
    except OSError:
        head = b""  # Manifest.load names the problem
    if not _is_v2(head):
        manifest = Manifest.load(path)
        check_file_sums(directory, manifest.files())
        return Bundle(directory, source or str(directory), manifest)
    from alertfusion.manifest_v2 import check_bundle_shapes, legacy_manifest, parse_manifest

    spec = parse_manifest(json.loads(head), str(path))
    assert not isinstance(spec, Manifest)
    check_file_sums(directory, spec.files())
    check_bundle_shapes(spec)
    if spec.recipe.transcriber is not None:
        from alertfusion.stt import check_alphabets

        check_alphabets(directory, spec)
    return Bundle(directory, source or str(directory), legacy_manifest(spec), spec)


def _default_cache_dir() -> str:
    from alertfusion.settings import EngineSettings

    default = EngineSettings.model_fields["bundle_cache_dir"].default
    return str(os.environ.get("BUNDLE_CACHE_DIR", default))


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key prefix without a trailing slash) of ``s3://bucket[/prefix][/]``."""
    rest = uri[len(S3_SCHEME) :] if uri.startswith(S3_SCHEME) else ""
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.strip("/")
    if not bucket or any(part in ("", ".", "..") for part in prefix.split("/") if prefix):
        raise BundleError(
            f"{uri!r} is not an s3://bucket/prefix URI", code=ReasonCode.BUNDLE_NOT_FOUND
        )
    return bucket, prefix


def fetch_s3_bundle(uri: str, cache_dir: Path) -> Path:
    """The local copy of the bundle at `uri`: reused when the cache holds this very manifest's
    bundle, otherwise downloaded, checked and published atomically (module docstring)."""
    from alertfusion import aws

    bucket, prefix = parse_s3_uri(uri)
    s3 = aws.s3()
    manifest_bytes = _get_object(s3, bucket, _key(prefix, MANIFEST_FILE), uri, MAX_MANIFEST_BYTES)
    target = cache_dir / hashlib.sha256(manifest_bytes).hexdigest()[:32]
    if (target / MANIFEST_FILE).is_file():
        return target
    manifest: Manifest | ManifestV2
    try:
        if _is_v2(manifest_bytes):
            from alertfusion.manifest_v2 import parse_manifest

            manifest = parse_manifest(json.loads(manifest_bytes), f"{uri}/{MANIFEST_FILE}")
        else:
            manifest = Manifest.model_validate_json(manifest_bytes)
    except ValueError as exc:
        raise BundleError(f"{uri}/{MANIFEST_FILE} is not a valid manifest: {exc}") from exc
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=cache_dir))
    try:
        for name, size in _sizes(manifest).items():
            _download(s3, bucket, _key(prefix, name), staging / name, uri, max_bytes=size)
        check_file_sums(staging, manifest.files())
        # the manifest last: a directory with a manifest is a complete one
        (staging / MANIFEST_FILE).write_bytes(manifest_bytes)
        try:
            os.rename(staging, target)
        except OSError:
            # another process published the same bundle first: theirs is as good as ours
            if not (target / MANIFEST_FILE).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _sizes(manifest: Manifest | ManifestV2) -> dict[str, int]:
    """Each file's size limit: the manifest's own size where it has one, generous for the
    tokenizer (its size is not in the manifest)."""
    sizes = {}
    for model in manifest.model_entries().values():
        sizes[model.file] = model.size_bytes
        for extra in (getattr(model, "alphabet", None), getattr(model, "decoder", None)):
            if extra is not None:
                sizes[extra.file] = extra.size_bytes
        if model.fp32_fallback is not None:
            sizes[model.fp32_fallback.file] = model.fp32_fallback.size_bytes
    if manifest.golden is not None:
        sizes[manifest.golden.file] = manifest.golden.size_bytes
    if manifest.text is not None:
        sizes[manifest.text.tokenizer_file] = 64 << 20
    return sizes


def _key(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def s3_bundle_error(exc: Exception, uri: str, key: str) -> Exception:
    """A typed error for a failed S3 call: missing or forbidden is BUNDLE_NOT_FOUND (a
    configuration problem), anything else may pass with a retry."""
    code = error_code(exc)
    if code in _NOT_FOUND_CODES:
        return BundleError(
            f"cannot read {key} of the model bundle {uri} ({code})",
            code=ReasonCode.BUNDLE_NOT_FOUND,
            details={"s3_error": code},
        )
    return TransientError(
        f"S3 failed while fetching {key} of the model bundle {uri}: {code or type(exc).__name__}",
        details={"s3_error": code or type(exc).__name__},
    )


def _get_object(s3: Any, bucket: str, key: str, uri: str, max_bytes: int) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = s3.get_object(Bucket=bucket, Key=key)
        body = response["Body"]
        data: bytes = body.read(max_bytes + 1)
        body.close()
    except (ClientError, BotoCoreError) as exc:
        raise s3_bundle_error(exc, uri, key) from exc
    if len(data) > max_bytes:
        raise BundleError(f"{uri}: {key} is larger than {max_bytes} bytes")
    return data


def _download(s3: Any, bucket: str, key: str, dest: Path, uri: str, *, max_bytes: int) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = s3.get_object(Bucket=bucket, Key=key)
        body = response["Body"]
        written = 0
        with dest.open("wb") as fh:
            while chunk := body.read(_CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise BundleError(
                        f"{uri}: {key} is larger than the manifest says ({max_bytes} bytes)"
                    )
                fh.write(chunk)
        body.close()
    except (ClientError, BotoCoreError) as exc:
        raise s3_bundle_error(exc, uri, key) from exc
