"""The EC2 t2.medium fallback (deployed only with `-c fallback=true`)."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from infra.config import InfraConfig
from infra.constructs.fallback_instance import FallbackInstance
from infra.constructs.function_support import TokenIssuer, log_retention
from infra.constructs.service_image import ServiceImage
from infra.stacks.cdk_managed import retain_cdk_handler_logs
from infra.stacks.shared import PipelineRefs, UserPoolRefs


class FallbackStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        refs: PipelineRefs,
        api_stack_name: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.fallback = FallbackInstance(
            self,
            "Fallback",
            config=config,
            image=ServiceImage.for_config(config),
            refs=refs,
            token_issuer=self._token_issuer(config, api_stack_name),
        )
        retain_cdk_handler_logs(self, log_retention(config))
        CfnOutput(self, "FallbackUrl", value=self.fallback.url, description="plain HTTP")
        CfnOutput(self, "InstanceId", value=self.fallback.instance.instance_id)
        CfnOutput(
            self,
            "SessionCommand",
            value=f"aws ssm start-session --target {self.fallback.instance.instance_id}",
        )
        CfnOutput(self, "LogGroup", value=self.fallback.log_group.log_group_name)

    def _token_issuer(self, config: InfraConfig, api_stack_name: str) -> TokenIssuer | None:
        """The tokens the API accepts, accepted here too: the API stack's user pool (its
        exports), or the same OpenID Connect issuer."""
        if config.auth == "cognito":
            pool = UserPoolRefs.imported(api_stack_name)
            return TokenIssuer(pool.issuer(self), (pool.client_id,))
        if config.auth == "oidc" and config.oidc_issuer:
            return TokenIssuer(config.oidc_issuer, tuple(config.oidc_audience))
        return None
