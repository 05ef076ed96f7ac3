"""The client API key, kept in Secrets Manager: API Gateway's key and the EC2 fallback both
use this one value, so a client can switch to the fallback without a new key."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.nag import acknowledge

API_KEY_LENGTH = 40


class ClientApiKey(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy):
        super().__init__(scope, construct_id)
        self.secret = secretsmanager.Secret(
            self,
            "Secret",
            description="alertfusion client API key (x-api-key)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=API_KEY_LENGTH,
                exclude_punctuation=True,
                include_space=False,
            ),
            removal_policy=removal_policy,
        )
        acknowledge(
            self.secret,
            "AwsSolutions-SMG4",
            "A static client API key shipped in app builds: rotating it is a coordinated "
            "client release (put a new value, redeploy the API stack, update the apps), not "
            "something a rotation Lambda can do on its own.",
        )
