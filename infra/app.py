"""The CDK app (`cdk.json`: `python -m infra.app`): pipeline, API and optional EC2 fallback."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import App, Environment, Tags

from alertfusion.errors import ConfigError
from infra.build_layer import build_core_layer
from infra.config import InfraConfig, load_config
from infra.nag import add_rule_packs
from infra.stacks.api_stack import ApiStack
from infra.stacks.fallback_stack import FallbackStack
from infra.stacks.pipeline_stack import PipelineStack
from infra.stacks.shared import PipelineRefs


@dataclass(frozen=True)
class AlertFusionApp:
    config: InfraConfig
    pipeline: PipelineStack
    api: ApiStack
    fallback: FallbackStack | None


def build_app(app: App, *, core_layer_dir: Path) -> AlertFusionApp:
    """Add every stack the context asks for to `app` (raises ConfigError on bad context)."""
    config = load_config(app.node.get_all_context())
    env = Environment(
        account=config.account or os.environ.get("CDK_DEFAULT_ACCOUNT"), region=config.region
    )
    pipeline = PipelineStack(
        app,
        config.stack_name("pipeline"),
        description="alertfusion pipeline: bucket, jobs table, starter, classifier, sweeper",
        config=config,
        core_layer_dir=core_layer_dir,
        env=env,
    )
    refs = PipelineRefs.imported(pipeline.stack_name, has_alarm_topic=bool(config.alarm_email))
    api = ApiStack(
        app,
        config.stack_name("api"),
        description="alertfusion HTTP API: API Gateway + the API function",
        config=config,
        refs=refs,
        env=env,
    )
    api.add_stack_dependency(pipeline)
    fallback = None
    if config.fallback:
        fallback = FallbackStack(
            app,
            config.stack_name("fallback"),
            description="alertfusion EC2 t2.medium fallback serving the same API",
            config=config,
            refs=refs,
            api_stack_name=api.stack_name,
            env=env,
        )
        fallback.add_stack_dependency(pipeline)
        if config.auth == "cognito":
            fallback.add_stack_dependency(api)  # it imports the user pool's ids
    Tags.of(app).add("project", "alertfusion")
    Tags.of(app).add("stage", config.stage)
    add_rule_packs(app)
    return AlertFusionApp(config=config, pipeline=pipeline, api=api, fallback=fallback)


def main(app: App | None = None) -> int:
    """Synthesise the app (the CDK CLI passes context and outdir through the environment)."""
    app = app or App()
    try:
        # refuse bad context before building anything
        config = load_config(app.node.get_all_context())
        build_app(app, core_layer_dir=build_core_layer(architecture=config.architecture))
    except ConfigError as exc:
        sys.stderr.write(f"alertfusion: {exc.message}\n")
        return 2
    app.synth()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
