"""The one container image (functions/Dockerfile): how CDK stages and builds it.

`cdk synth` only stages the build context into cdk.out (no docker needed); `cdk deploy`
builds it for the functions' platform (`-c architecture=`: linux/amd64 by default,
linux/arm64) and pushes it to the CDK asset repository. The classifier, the
API function and the EC2 fallback all name the same asset (same context, same options, so
the same hash and one image).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aws_cdk import IgnoreMode
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.config import REPO_ROOT, InfraConfig

DOCKERFILE = "functions/Dockerfile"
CLASSIFIER_COMMAND = "functions.classifier.app.handler"
API_COMMAND = "functions.api.app.handler"
ASGI_APP = "functions.api.app:app"
#: the fallback's uvicorn protocol: malformed HTTP and stalled headers in the API's error
#: shape (functions.api.server)
ASGI_PROTOCOL = "functions.api.server:ApiH11Protocol"
#: The image's task root (LAMBDA_TASK_ROOT of the base image).
TASK_ROOT = "/var/task"
BAKED_TARGET = "bundle-baked"
S3_TARGET = "bundle-s3"


@dataclass(frozen=True)
class ServiceImage:
    """Build options of the image for one configuration."""

    target: str
    build_args: dict[str, str]
    #: the Dockerfile's PLATFORM build argument and the asset's platform ("linux/amd64")
    platform: str = "linux/amd64"
    #: added to .dockerignore's allow-list: only the bundle this build bakes is staged
    exclude: list[str] = field(default_factory=list)

    @classmethod
    def for_config(cls, config: InfraConfig) -> ServiceImage:
        platform = {"PLATFORM": config.image_platform}
        if config.bundle_is_s3:
            return cls(
                target=S3_TARGET,
                build_args={**platform, "MODEL_BUNDLE_URI": config.bundle},
                platform=config.image_platform,
                exclude=["build/models"],
            )
        bundle = config.bundle_context_path
        return cls(
            target=BAKED_TARGET,
            build_args={**platform, "BUNDLE_DIR": bundle},
            platform=config.image_platform,
            exclude=["build/models/*", f"!{bundle}"],
        )

    @property
    def asset_platform(self) -> ecr_assets.Platform:
        return ecr_assets.Platform.custom(self.platform)

    def lambda_code(self, command: str) -> lambda_.DockerImageCode:
        return lambda_.DockerImageCode.from_image_asset(
            str(REPO_ROOT),
            file=DOCKERFILE,
            platform=self.asset_platform,
            target=self.target,
            build_args=self.build_args,
            exclude=self.exclude,
            ignore_mode=IgnoreMode.DOCKER,
            cmd=[command],
        )

    def asset(self, scope: Construct, construct_id: str) -> ecr_assets.DockerImageAsset:
        return ecr_assets.DockerImageAsset(
            scope,
            construct_id,
            directory=str(REPO_ROOT),
            file=DOCKERFILE,
            platform=self.asset_platform,
            target=self.target,
            build_args=self.build_args,
            exclude=self.exclude,
            ignore_mode=IgnoreMode.DOCKER,
        )
