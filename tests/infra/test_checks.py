"""AWS's own checks: cdk-nag (AwsSolutions + Serverless) and cfn-lint on every template."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import (
    ALARM_EMAIL,
    COGNITO_OVERRIDES,
    CORS_ORIGIN,
    FALLBACK_CIDRS,
    NAMED_BUNDLES,
    OIDC_OVERRIDES,
    S3_BUNDLE,
    TEST_STAGE,
    Synth,
    cdk_json_context,
)

pytestmark = pytest.mark.infra

SYNTHS = [
    "synth",
    "synth_s3_bundle",
    "synth_options",
    "synth_cognito",
    "synth_oidc",
    "synth_named_bundles",
]


@pytest.mark.parametrize("fixture", SYNTHS)
def test_cdk_nag_reports_nothing_unacknowledged(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    """The synth itself fails on a finding; the report it leaves must also be empty."""
    synth: Synth = request.getfixturevalue(fixture)
    report = json.loads((synth.outdir / "validation-report.json").read_text())
    assert report["pluginReports"] == [], json.dumps(report, indent=2)[:4000]


@pytest.mark.parametrize("fixture", SYNTHS)
def test_cfn_lint_finds_nothing_but_w3005(request: pytest.FixtureRequest, fixture: str) -> None:
    from cfnlint.api import ManualArgs, lint_file

    synth: Synth = request.getfixturevalue(fixture)
    config = ManualArgs(regions=[synth.config.region], ignore_checks=["W3005"])
    for name in synth.stack_names.values():
        matches = lint_file(synth.outdir / f"{name}.template.json", config=config)
        assert not matches, "\n".join(str(m) for m in matches)


class _Recorder:
    """Stands in for aws_cdk.Validations inside infra.nag: records acknowledgments instead
    of applying them, so the packs report everything they would find."""

    def __init__(self) -> None:
        self.acknowledged: list[tuple[str, str, str]] = []

    def of(self, scope: Any) -> Any:
        recorder = self

        class _Scoped:
            def acknowledge(self, *rules: Any) -> None:
                for rule in rules:
                    recorder.acknowledged.append((scope.node.path, rule.id, rule.reason))

            def add_plugins(self, *plugins: Any) -> None:
                del plugins

        return _Scoped()


def _violations(app: Any) -> set[tuple[str, str]]:
    from cdk_nag import AwsSolutionsChecks, ServerlessChecks

    found = set()
    for pack in (AwsSolutionsChecks(), ServerlessChecks()):
        for violation in pack.validate_scope(app).violations:
            for resource in violation.violating_resources:
                path = resource.construct_path
                assert path is not None, resource
                found.add((violation.rule_name, path))
    return found


@pytest.mark.parametrize(
    "overrides",
    [
        {
            "fallback": "true",
            "fallback_allowed_cidrs": ",".join(FALLBACK_CIDRS),
            "alarm_email": ALARM_EMAIL,
            "cors_allowed_origins": CORS_ORIGIN,
        },
        {"bundle": S3_BUNDLE, "removal_policy": "destroy"},
        {
            "bundle": S3_BUNDLE,
            "bundles": ",".join(f"{n}={u}" for n, u in NAMED_BUNDLES.items()),
            "fallback": "true",
            "fallback_allowed_cidrs": ",".join(FALLBACK_CIDRS),
        },
        {"bundle": S3_BUNDLE, **COGNITO_OVERRIDES},
        {"bundle": S3_BUNDLE, **OIDC_OVERRIDES},
    ],
    ids=["full", "s3-bundle", "named-bundles", "cognito", "oidc"],
)
def test_every_acknowledgment_is_narrow_reasoned_and_matches_a_finding(
    monkeypatch: pytest.MonkeyPatch,
    core_layer_dir: Path,
    placeholder_bundle: str,
    overrides: dict[str, str],
) -> None:
    from aws_cdk import App

    import infra.nag
    from infra.app import build_app

    recorder = _Recorder()
    monkeypatch.setattr(infra.nag, "Validations", recorder)
    context = cdk_json_context()
    context.update({"stage": TEST_STAGE, "bundle": placeholder_bundle, **overrides})
    app = App(context=context)
    build_app(app, core_layer_dir=core_layer_dir)
    findings = _violations(app)

    assert recorder.acknowledged
    for path, rule, reason in recorder.acknowledged:
        assert len(reason) >= 60, f"{rule} at {path}: the reason must explain ({reason!r})"
        if rule.startswith(("AwsSolutions-IAM5", "AwsSolutions-IAM4")):
            assert "[" in rule, f"{rule} at {path}: acknowledge the finding, not the rule"
        matched = [
            (r, p) for r, p in findings if r == rule and (p == path or p.startswith(path + "/"))
        ]
        assert matched, f"{rule} acknowledged at {path} but nothing there is found"
    for rule, path in findings:
        assert any(
            r == rule and (path == p or path.startswith(p + "/"))
            for p, r, _ in recorder.acknowledged
        ), f"{rule} at {path} is neither fixed nor acknowledged"
