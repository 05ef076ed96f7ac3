"""Acknowledgments for helper resources CDK itself adds to a stack (custom-resource handlers)."""

from __future__ import annotations

from aws_cdk import Stack

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
