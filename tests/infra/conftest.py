"""The infra tier synthesises the CDK app once per session (cdk-nag runs inside that synth) and
every test asserts on the result."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# Node 20 is what the machine has; jsii reads this before its first call.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from tests.conftest import REPO  # noqa: E402

CDK_JSON = REPO / "cdk.json"
TEST_STAGE = "test"
FALLBACK_CIDRS = ("203.0.113.0/24", "198.51.100.7/32")
ALARM_EMAIL = "ops@example.com"
CORS_ORIGIN = "https://app.example.com"
S3_BUNDLE = "s3://models-example-bucket/alertfusion/v1"
OIDC_ISSUER = "https://login.example.com/tenant-1"
OIDC_AUDIENCE = "alertfusion-app"
#: end users in a Cognito user pool, with the fallback checking the same tokens
COGNITO_OVERRIDES = {
    "auth": "cognito",
    "fallback": "true",
    "fallback_allowed_cidrs": ",".join(FALLBACK_CIDRS),
    "cors_allowed_origins": CORS_ORIGIN,
}
#: end users of another OpenID Connect issuer
OIDC_OVERRIDES = {"auth": "oidc", "oidc_issuer": OIDC_ISSUER, "oidc_audience": OIDC_AUDIENCE}


def cdk_json_context() -> dict[str, Any]:
    """The feature flags the real CLI passes (cdk.json), so tests synthesise the same app."""
    return dict(json.loads(CDK_JSON.read_text())["context"])


@dataclass
class Synth:
    """One synthesised cloud assembly."""

    outdir: Path
    config: Any
    stack_names: dict[str, str]
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    assets: dict[str, dict[str, Any]] = field(default_factory=dict)
    _assertions: dict[str, Any] = field(default_factory=dict)

    def template(self, component: str) -> Any:
        """aws_cdk.assertions.Template of 'pipeline', 'api' or 'fallback'."""
        from aws_cdk.assertions import Template

        if component not in self._assertions:
            self._assertions[component] = Template.from_json(self.templates[component])
        return self._assertions[component]

    def resources(self, component: str, cfn_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.templates[component]["Resources"].items()
            if resource["Type"] == cfn_type
        }

    def asset_source(self, component: str, asset_hash: str) -> dict[str, Any]:
        manifest = self.assets[component]
        entry = manifest.get("files", {}).get(asset_hash) or manifest["dockerImages"][asset_hash]
        return dict(entry["source"])

    def asset_dir(self, component: str, asset_hash: str) -> Path:
        source = self.asset_source(component, asset_hash)
        return self.outdir / (source.get("path") or source["directory"])


def synthesize(
    outdir: Path, core_layer_dir: Path, overrides: dict[str, Any], *, components: tuple[str, ...]
) -> Synth:
    from aws_cdk import App

    from infra.app import build_app

    context = cdk_json_context()
    context.update(overrides)
    app = App(context=context, outdir=str(outdir))
    built = build_app(app, core_layer_dir=core_layer_dir)
    app.synth()  # raises ValidationFailed on any unacknowledged cdk-nag finding
    names = {"pipeline": built.pipeline.stack_name, "api": built.api.stack_name}
    if built.fallback is not None:
        names["fallback"] = built.fallback.stack_name
    assert set(names) == set(components)
    synth = Synth(outdir=outdir, config=built.config, stack_names=names)
    for component, name in names.items():
        synth.templates[component] = json.loads((outdir / f"{name}.template.json").read_text())
        synth.assets[component] = json.loads((outdir / f"{name}.assets.json").read_text())
    return synth


@pytest.fixture(scope="session")
def core_layer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from infra.build_layer import build_core_layer

    return build_core_layer(tmp_path_factory.mktemp("layer") / "core")


@contextmanager
def _repo_bundle(manifest: bytes) -> Iterator[str]:
    """A bundle directory for the image to bake, holding `manifest` and a placeholder model
    file. The image is built from the repository, so it must live inside it (under
    build/models/, which is git-ignored); removed afterwards."""
    relative = f"build/models/.infra-test-{uuid.uuid4().hex[:12]}"
    path = REPO / relative
    created = [p for p in (path.parent.parent, path.parent) if not p.exists()]
    path.mkdir(parents=True)
    (path / "manifest.json").write_bytes(manifest)
    (path / "weights.onnx").write_bytes(b"not a model")
    try:
        yield relative
    finally:
        shutil.rmtree(path, ignore_errors=True)
        for parent in reversed(created):
            if parent.exists() and not any(parent.iterdir()):
                parent.rmdir()


@pytest.fixture(scope="session")
def placeholder_bundle() -> Iterator[str]:
    """Its content is a placeholder on purpose: no entry point may load the model at import."""
    placeholder = {"placeholder": "infra tests: a layout fixture, not a model bundle"}
    with _repo_bundle(json.dumps(placeholder).encode()) as relative:
        yield relative


@pytest.fixture(scope="session")
def synth(
    tmp_path_factory: pytest.TempPathFactory, core_layer_dir: Path, placeholder_bundle: str
) -> Synth:
    """The full app: fallback on (two CIDRs), alarm e-mail, CORS origin, a baked bundle."""
    return synthesize(
        tmp_path_factory.mktemp("cdk.out"),
        core_layer_dir,
        {
            "stage": TEST_STAGE,
            "bundle": placeholder_bundle,
            "fallback": "true",
            "fallback_allowed_cidrs": ",".join(FALLBACK_CIDRS),
            "alarm_email": ALARM_EMAIL,
            "cors_allowed_origins": CORS_ORIGIN,
        },
        components=("pipeline", "api", "fallback"),
    )


@pytest.fixture(scope="session")
def synth_s3_bundle(tmp_path_factory: pytest.TempPathFactory, core_layer_dir: Path) -> Synth:
    """The defaults' other branches: bundle from S3, no fallback, no alarm topic, no CORS,
    data deleted with the stacks."""
    return synthesize(
        tmp_path_factory.mktemp("cdk.out-s3"),
        core_layer_dir,
        {"stage": TEST_STAGE, "bundle": S3_BUNDLE, "removal_policy": "destroy"},
        components=("pipeline", "api"),
    )


@pytest.fixture(scope="session")
def synth_cognito(tmp_path_factory: pytest.TempPathFactory, core_layer_dir: Path) -> Synth:
    """`-c auth=cognito`: the stack's user pool, its authorizer, the fallback on its tokens."""
    return synthesize(
        tmp_path_factory.mktemp("cdk.out-cognito"),
        core_layer_dir,
        {"stage": TEST_STAGE, "bundle": S3_BUNDLE, **COGNITO_OVERRIDES},
        components=("pipeline", "api", "fallback"),
    )


@pytest.fixture(scope="session")
def synth_oidc(tmp_path_factory: pytest.TempPathFactory, core_layer_dir: Path) -> Synth:
    """`-c auth=oidc`: an existing OpenID Connect issuer; the function checks its tokens."""
    return synthesize(
        tmp_path_factory.mktemp("cdk.out-oidc"),
        core_layer_dir,
        {"stage": TEST_STAGE, "bundle": S3_BUNDLE, **OIDC_OVERRIDES},
        components=("pipeline", "api"),
    )


#: the deploy options the `synth_options` fixture turns on
OPTIONS_PROVISIONED = 2


@pytest.fixture(scope="session")
def synth_options(tmp_path_factory: pytest.TempPathFactory, placeholder_bundle: str) -> Synth:
    """Every deploy option that is off by default: Graviton, SnapStart, provisioned
    concurrency (no fallback: it is x86_64 and refuses arm64)."""
    from infra.build_layer import build_core_layer

    return synthesize(
        tmp_path_factory.mktemp("cdk.out-options"),
        build_core_layer(tmp_path_factory.mktemp("layer-arm64") / "core", "arm64"),
        {
            "stage": TEST_STAGE,
            "bundle": placeholder_bundle,
            "architecture": "arm64",
            "snapstart": "true",
            "provisioned": str(OPTIONS_PROVISIONED),
        },
        components=("pipeline", "api"),
    )


#: `-c bundles=` of `synth_named_bundles`: two sibling systems' bundles in S3
NAMED_BUNDLES = {
    "infant-cry": "s3://models-example-bucket/siblings/infant-cry/v2",
    "dog-bark": "s3://other-models-bucket/dog-bark",
}


@pytest.fixture(scope="session")
def synth_named_bundles(
    tmp_path_factory: pytest.TempPathFactory, core_layer_dir: Path, offline_bundle: Path
) -> Iterator[Synth]:
    """Named bundles from S3 (`-c bundles=`) beside a baked default bundle that transcribes
    itself: the named ones may still need Amazon Transcribe."""
    named = ",".join(f"{name}={uri}" for name, uri in NAMED_BUNDLES.items())
    with _repo_bundle((offline_bundle / "manifest.json").read_bytes()) as relative:
        yield synthesize(
            tmp_path_factory.mktemp("cdk.out-named"),
            core_layer_dir,
            {"stage": TEST_STAGE, "bundle": relative, "bundles": named},
            components=("pipeline", "api"),
        )


@pytest.fixture(scope="session")
def synth_offline(
    tmp_path_factory: pytest.TempPathFactory, core_layer_dir: Path, offline_bundle: Path
) -> Iterator[Synth]:
    """A baked bundle whose recipe transcribes with its own speech-to-text model (its
    manifest; infra reads nothing else of it)."""
    with _repo_bundle((offline_bundle / "manifest.json").read_bytes()) as relative:
        yield synthesize(
            tmp_path_factory.mktemp("cdk.out-offline"),
            core_layer_dir,
            {"stage": TEST_STAGE, "bundle": relative},
            components=("pipeline", "api"),
        )
