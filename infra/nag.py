"""cdk-nag 3: the rule packs, and acknowledgments that name the exact finding they accept."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import Acknowledgment, App, Stack, Validations
from cdk_nag import AwsSolutionsChecks, ServerlessChecks
from constructs import IConstruct


def add_rule_packs(app: App) -> None:
    """AWS Solutions + Serverless checks run during synthesis; a finding fails the synth."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app), ServerlessChecks(app))


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Accept one rule (or one finding, `Rule[Finding]`) on `scope` and its children."""
    if len(reason) < 20:
        raise ValueError(f"acknowledging {rule} needs a real reason, not {reason!r}")
    Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=reason))


def flatten_reference(scope: IConstruct, value: Any) -> str:
    """The string cdk-nag uses for a resource in a finding id (its `flattenCfnReference`):
    `<LogicalId.Attr>` for Fn::GetAtt, `<LogicalId>` for Ref, the export name for
    Fn::ImportValue, `<Param>` for `${Param}` in Fn::Sub, Fn::Join joined."""
    node = Stack.of(scope).resolve(value)

    def visit(item: Any) -> str:
        if item is None:
            return ""
        if isinstance(item, str):
            return item.replace("${", "<").replace("}", ">")
        if isinstance(item, dict):
            if "Fn::Join" in item:
                delimiter, parts = item["Fn::Join"]
                return delimiter.join(visit(part) for part in parts)
            if "Fn::Sub" in item:
                return visit(item["Fn::Sub"])
            if "Fn::GetAtt" in item:
                resource, attribute = item["Fn::GetAtt"]
                return f"<{visit(resource)}.{visit(attribute)}>"
            if "Fn::ImportValue" in item:
                return visit(item["Fn::ImportValue"])
            if "Ref" in item:
                return f"<{visit(item['Ref'])}>"
        return json.dumps(item, separators=(",", ":"))

    return visit(node)


def acknowledge_wildcard_resource(
    scope: IConstruct, policy_scope: IConstruct, resource: Any, reason: str
) -> None:
    """Accept AwsSolutions-IAM5 for exactly one wildcard resource (e.g. `<bucket>/uploads/*`)."""
    flat = flatten_reference(policy_scope, resource)
    acknowledge(scope, f"AwsSolutions-IAM5[Resource::{flat}]", reason)
