"""The zip functions' layers: the core library and AWS's published Powertools v3 layer."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from infra.config import LAMBDA_PYTHON_VERSION, InfraConfig
from infra.constructs.function_support import lambda_architecture

ZIP_RUNTIME = lambda_.Runtime.PYTHON_3_12


def powertools_layer_parameter(version: str, architecture: str = "x86_64") -> str:
    """The public SSM parameter AWS publishes for each Powertools release, architecture and
    Python version; its value is the layer ARN in the deployment region (resolved by
    CloudFormation)."""
    return f"/aws/service/powertools/python/{architecture}/python{LAMBDA_PYTHON_VERSION}/{version}"


class FunctionLayers(Construct):
    """`core` (`python/alertfusion`, built by infra.build_layer) and `powertools`."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: InfraConfig, core_layer_dir: Path
    ) -> None:
        super().__init__(scope, construct_id)
        if ZIP_RUNTIME.name != f"python{LAMBDA_PYTHON_VERSION}":
            raise AssertionError("ZIP_RUNTIME and LAMBDA_PYTHON_VERSION disagree")
        if not (core_layer_dir / "python" / "alertfusion" / "__init__.py").is_file():
            raise FileNotFoundError(
                f"{core_layer_dir} holds no core layer: run `python -m infra.build_layer`"
            )
        self.core = lambda_.LayerVersion(
            self,
            "Core",
            code=lambda_.Code.from_asset(str(core_layer_dir)),
            compatible_runtimes=[ZIP_RUNTIME],
            compatible_architectures=[lambda_architecture(config)],
            description="alertfusion core library (pure Python; heavy imports are lazy)",
        )
        arn = ssm.StringParameter.value_for_string_parameter(
            self, powertools_layer_parameter(config.powertools_version, config.architecture)
        )
        self.powertools = lambda_.LayerVersion.from_layer_version_arn(self, "Powertools", arn)

    @property
    def all(self) -> list[lambda_.ILayerVersion]:
        # Order matters: a later layer's files win, and the core layer carries nothing the
        # Powertools layer has.
        return [self.powertools, self.core]
