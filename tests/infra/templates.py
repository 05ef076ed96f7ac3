"""Helpers to read synthesised templates: IAM statements per role, references."""

from __future__ import annotations

from typing import Any


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def as_env(variables: dict[str, Any]) -> dict[str, str]:
    """A function's template variables as the function would see them (references become
    placeholders)."""
    return {
        k: v if isinstance(v, str) else f"placeholder-{k.lower()}" for k, v in variables.items()
    }


def ref_id(value: Any) -> str | None:
    """The logical id a Ref / Fn::GetAtt points at (None for anything else)."""
    if isinstance(value, dict):
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            return str(value["Fn::GetAtt"][0])
    return None


def function_role_id(template: dict[str, Any], function_id: str) -> str:
    role = ref_id(template["Resources"][function_id]["Properties"]["Role"])
    assert role is not None
    return role


def role_statements(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    """Every statement granted to a role: its inline policies and the AWS::IAM::Policy
    resources attached to it."""
    resources = template["Resources"]
    statements: list[dict[str, Any]] = []
    for policy in resources[role_id]["Properties"].get("Policies", []):
        statements += policy["PolicyDocument"]["Statement"]
    for resource in resources.values():
        if resource["Type"] == "AWS::IAM::Policy" and any(
            ref_id(r) == role_id for r in resource["Properties"].get("Roles", [])
        ):
            statements += resource["Properties"]["PolicyDocument"]["Statement"]
    return statements


def allowed_actions(statements: list[dict[str, Any]]) -> set[str]:
    return {
        action
        for statement in statements
        if statement["Effect"] == "Allow"
        for action in as_list(statement["Action"])
    }


def resources_for(statements: list[dict[str, Any]], action: str) -> list[Any]:
    return [
        resource
        for statement in statements
        if statement["Effect"] == "Allow" and action in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    ]


def join_suffix(value: Any) -> str:
    """The literal tail of an Fn::Join ARN (e.g. '/uploads/*')."""
    if isinstance(value, dict) and "Fn::Join" in value:
        parts = value["Fn::Join"][1]
        return parts[-1] if isinstance(parts[-1], str) else ""
    return value if isinstance(value, str) else ""


def find_one(template: dict[str, Any], cfn_type: str, prefix: str) -> tuple[str, dict[str, Any]]:
    """The one resource of `cfn_type` whose logical id starts with `prefix`."""
    found = [
        (lid, r)
        for lid, r in template["Resources"].items()
        if r["Type"] == cfn_type and lid.startswith(prefix)
    ]
    assert len(found) == 1, f"{cfn_type} {prefix}*: {[lid for lid, _ in found]}"
    return found[0]


def flatten(value: Any) -> str:
    """A template string with references shown as <LogicalId> (Fn::Join, Fn::Sub, Ref)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(flatten(v) for v in value)
    if isinstance(value, dict):
        if "Fn::Join" in value:
            return value["Fn::Join"][0].join(flatten(v) for v in value["Fn::Join"][1])
        if "Fn::Sub" in value:
            return flatten(value["Fn::Sub"])
        if "Fn::Base64" in value:
            return flatten(value["Fn::Base64"])
        if "Ref" in value:
            return f"<{value['Ref']}>"
        if "Fn::GetAtt" in value:
            return f"<{'.'.join(value['Fn::GetAtt'])}>"
        if "Fn::ImportValue" in value:
            return f"<import:{flatten(value['Fn::ImportValue'])}>"
    return str(value)


def resource_paths(template: dict[str, Any]) -> dict[str, str]:
    """Full path of every AWS::ApiGateway::Resource ("/static/{name}"); the root is "/"."""
    resources = template["Resources"]
    parts = {
        lid: (r["Properties"]["ParentId"], r["Properties"]["PathPart"])
        for lid, r in resources.items()
        if r["Type"] == "AWS::ApiGateway::Resource"
    }

    def path(lid: str) -> str:
        parent, part = parts[lid]
        parent_id = ref_id(parent)
        is_root = isinstance(parent, dict) and "Fn::GetAtt" in parent
        prefix = "" if is_root else path(parent_id or "")
        return f"{prefix}/{part}"

    return {lid: path(lid) for lid in parts}


def api_methods(template: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Every AWS::ApiGateway::Method by (HTTP method, full resource path)."""
    paths = resource_paths(template)
    methods: dict[tuple[str, str], dict[str, Any]] = {}
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::ApiGateway::Method":
            continue
        props = resource["Properties"]
        resource_id = props["ResourceId"]
        if isinstance(resource_id, dict) and "Fn::GetAtt" in resource_id:
            assert resource_id["Fn::GetAtt"][1] == "RootResourceId"
            path = "/"
        else:
            path = paths[ref_id(resource_id) or ""]
        key = (props["HttpMethod"], path)
        assert key not in methods, f"{key} is defined twice"
        methods[key] = props
    return methods
