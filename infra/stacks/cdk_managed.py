"""Helper resources CDK itself adds to a stack (custom-resource handler functions): their
cdk-nag acknowledgments, and log groups with retention (CDK gives them none)."""

from __future__ import annotations

from aws_cdk import CfnResource, Fn, RemovalPolicy, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs

from infra.nag import acknowledge

_BASIC_EXECUTION_ROLE = (
    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
    "AWSLambdaBasicExecutionRole]"
)


def acknowledge_cdk_managed(stack: Stack) -> None:
    """CDK's S3-notification handler (a singleton custom resource that writes the bucket's
    notification configuration at deploy time) ships its own role; its code and policy are
    CDK's, not ours, and it never sees audio."""
    for child in stack.node.children:
        if child.node.id.startswith("BucketNotificationsHandler"):
            acknowledge(
                child,
                _BASIC_EXECUTION_ROLE,
                "CDK's BucketNotificationsHandler (deploy-time custom resource that sets the "
                "bucket's S3 -> starter notification) logs with the AWS-managed basic "
                "execution policy; CDK creates this role, it cannot take a custom one.",
            )


def retain_cdk_handler_logs(stack: Stack, retention: logs.RetentionDays) -> None:
    """Every Lambda function CDK adds without a log group of ours gets its default group
    (/aws/lambda/<name>) created up front with `retention`; the custom resources that invoke
    those handlers wait for the groups, so Lambda never creates one without retention."""
    resources = [c for c in stack.node.find_all() if isinstance(c, CfnResource)]
    groups = []
    for handler in filter(_without_own_log_group, resources):
        group = logs.LogGroup(
            handler.node.scope,  # type: ignore[arg-type]  # IConstruct | None; a Construct here
            "RetainedLogs",
            log_group_name=Fn.join("", ["/aws/lambda/", handler.ref]),
            retention=retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        groups.append(group)
    for resource in resources:
        if resource.cfn_resource_type.startswith("Custom::"):
            for group in groups:
                resource.node.add_dependency(group)


def _without_own_log_group(resource: CfnResource) -> bool:
    if resource.cfn_resource_type != "AWS::Lambda::Function":
        return False
    if isinstance(resource, lambda_.CfnFunction):  # ours: L2 functions with a log group
        return resource.logging_config is None
    return True  # CDK's custom-resource providers write raw AWS::Lambda::Function resources
