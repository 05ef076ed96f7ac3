"""The API: API Gateway REST API + the API function, its alarms and outputs."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra.config import InfraConfig
from infra.constructs.alarms import Alarms
from infra.constructs.api import AlertFusionApi
from infra.constructs.function_support import service_name
from infra.constructs.service_image import ServiceImage
from infra.stacks.shared import (
    USER_POOL_CLIENT_ID,
    USER_POOL_ID,
    PipelineRefs,
    export,
    removal_policy,
)


class ApiStack(Stack):
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
        self.http = AlertFusionApi(
            self,
            "Http",
            config=config,
            image=ServiceImage.for_config(config),
            refs=refs,
            removal_policy=removal_policy(config),
        )
        topic = (
            sns.Topic.from_topic_arn(self, "AlarmTopic", refs.alarm_topic_arn)
            if refs.alarm_topic_arn
            else None
        )
        alarms = Alarms(self, "Alarms", topic=topic)
        alarms.function_health("ApiFunction", self.http.function)
        alarms.selfcheck_failed("ApiFunction", service_name("api"))
        alarms.api_health("Api", self.http.api)

        CfnOutput(self, "ApiUrl", value=self.http.api.url, description="base URL of the API")
        CfnOutput(
            self,
            "ApiKeyId",
            value=self.http.key.key_id,
            description="aws apigateway get-api-key --include-value --api-key <id>",
        )
        CfnOutput(self, "ApiFunctionName", value=self.http.function.function_name)
        users = self.http.users
        if users is not None:
            # exported: the fallback checks the same pool's tokens
            export(self, USER_POOL_ID, users.pool.user_pool_id, "the end users' Cognito pool")
            export(
                self,
                USER_POOL_CLIENT_ID,
                users.client.user_pool_client_id,
                "the app client users sign in with (the tokens' audience)",
            )
            CfnOutput(
                self,
                "SignInUrl",
                value=f"{users.hosted_ui_url}/login?client_id={users.client.user_pool_client_id}"
                f"&response_type=code&redirect_uri={self.http.page_url(config)}",
                description="the hosted sign-in page (the API's page starts it itself)",
            )
            CfnOutput(self, "TokenIssuer", value=users.issuer, description="`iss` of the tokens")
