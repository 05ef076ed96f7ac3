"""The EC2 t2.medium fallback (deployed only with `-c fallback=true`)."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from infra.config import InfraConfig
from infra.constructs.fallback_instance import FallbackInstance
from infra.constructs.function_support import log_retention
from infra.constructs.service_image import ServiceImage
from infra.stacks.cdk_managed import retain_cdk_handler_logs
from infra.stacks.shared import PipelineRefs


class FallbackStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        refs: PipelineRefs,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.fallback = FallbackInstance(
            self, "Fallback", config=config, image=ServiceImage.for_config(config), refs=refs
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
