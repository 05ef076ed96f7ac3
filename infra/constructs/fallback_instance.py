"""The EC2 fallback: the same image serving the API with uvicorn on one t2.medium.

Its own VPC with one public subnet and no NAT gateway (the instance reaches ECR, S3,
DynamoDB, Secrets Manager, SSM and CloudWatch through the internet gateway), IMDSv2 only
(hop limit 2 so the container can reach it), an encrypted gp3 root volume, detailed
monitoring, SSM Session Manager instead of SSH (no key pair, port 22 closed) and a security
group open only to the configured CIDRs on the API port. The API speaks plain HTTP on that
port: the API key crosses the network in clear, which is why the allowed CIDRs are
mandatory (put a TLS terminator in front for anything wider).
"""

from __future__ import annotations

import shlex

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from functions.api.server import KEEP_ALIVE_SECONDS
from infra.config import InfraConfig
from infra.constructs.audio_bucket import EXPIRING_PREFIXES, UPLOADS_PREFIX
from infra.constructs.function_support import (
    TokenIssuer,
    api_environment,
    auth_environment,
    engine_environment,
    grant_bundle_read,
    log_retention,
    pipeline_environment,
)
from infra.constructs.permissions import (
    TABLE_READ_WRITE_ACTIONS,
    allow_job_deletion,
    allow_objects,
    allow_table,
)
from infra.constructs.service_image import ASGI_APP, ASGI_PROTOCOL, TASK_ROOT, ServiceImage
from infra.nag import acknowledge
from infra.stacks.shared import PipelineRefs

INSTANCE_TYPE = "t2.medium"
ROOT_VOLUME_GIB = 30
ROOT_DEVICE = "/dev/xvda"
#: IMDSv2 responses must survive one extra hop: the docker bridge between container and host
METADATA_HOP_LIMIT = 2
VPC_CIDR = "10.80.0.0/24"
SUBNET_MASK = 26
CONTAINER_NAME = "alertfusion"
CONTAINER_TMPFS = "/tmp:rw,exec,size=2g,mode=1777"
SERVICE_UNIT = "/etc/systemd/system/alertfusion.service"
APP_ENV_FILE = "/etc/alertfusion/app.env"
SECRET_ENV_FILE = "/run/alertfusion/secret.env"
PREPARE_SCRIPT = "/usr/local/lib/alertfusion/prepare.sh"
RESTART_SECONDS = 5


class FallbackInstance(Construct):
    """`vpc`, `security_group`, `instance`, `log_group` and `url`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        image: ServiceImage,
        refs: PipelineRefs,
        token_issuer: TokenIssuer | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        #: whose tokens the app accepts with -c auth=cognito|oidc (no hosted sign-in here:
        #: Cognito redirects only to https pages, and this one is plain HTTP)
        self.token_issuer = token_issuer
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(VPC_CIDR),
            max_azs=1,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=SUBNET_MASK
                )
            ],
        )
        flow_logs = logs.LogGroup(
            self,
            "FlowLogs",
            retention=log_retention(config),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.vpc.add_flow_log(
            "FlowLog", destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs)
        )

        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=self.vpc,
            description=f"alertfusion fallback: TCP {config.fallback_port} from allowed CIDRs",
            allow_all_outbound=True,
        )
        for cidr in config.fallback_allowed_cidrs:
            self.security_group.add_ingress_rule(
                ec2.Peer.ipv4(cidr), ec2.Port.tcp(config.fallback_port), f"API clients {cidr}"
            )

        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=log_retention(config),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.asset = image.asset(self, "Image")
        self.role = self._role(config, refs)
        self.instance = ec2.Instance(
            self,
            "Instance",
            vpc=self.vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            associate_public_ip_address=True,
            instance_type=ec2.InstanceType(INSTANCE_TYPE),
            machine_image=ec2.MachineImage.latest_amazon_linux2023(),
            security_group=self.security_group,
            role=self.role,
            http_endpoint=True,
            http_tokens=ec2.HttpTokens.REQUIRED,
            http_put_response_hop_limit=METADATA_HOP_LIMIT,
            detailed_monitoring=True,
            ssm_session_permissions=True,
            block_devices=[
                ec2.BlockDevice(
                    device_name=ROOT_DEVICE,
                    volume=ec2.BlockDeviceVolume.ebs(
                        ROOT_VOLUME_GIB,
                        encrypted=True,
                        volume_type=ec2.EbsDeviceVolumeType.GP3,
                        delete_on_termination=True,
                    ),
                )
            ],
            user_data=self._user_data(config, refs),
            user_data_causes_replacement=True,
        )
        acknowledge(
            self.instance,
            "AwsSolutions-EC29",
            "A single, stateless fallback instance replaced by redeploying; termination "
            "protection would only make `cdk destroy` fail. Data lives in S3 and DynamoDB.",
        )
        self.url = f"http://{self.instance.instance_public_dns_name}:{config.fallback_port}"

    def _role(self, config: InfraConfig, refs: PipelineRefs) -> iam.Role:
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="alertfusion fallback instance: least privilege",
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn],
            )
        )
        self.asset.repository.grant_pull(role)
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["secretsmanager:GetSecretValue"], resources=[refs.api_key_secret_arn]
            )
        )
        # The same data-plane permissions as the API function.
        allow_objects(
            role,
            ["s3:GetObject", "s3:PutObject"],
            {UPLOADS_PREFIX: refs.objects_arn(UPLOADS_PREFIX)},
        )
        allow_table(role, refs.table_arn, TABLE_READ_WRITE_ACTIONS)
        allow_job_deletion(
            self,
            role,
            refs.objects_arn,
            prefixes=EXPIRING_PREFIXES,
            job_prefix=config.transcribe_job_prefix,
        )
        grant_bundle_read(config, role)
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken (docker login to the CDK asset registry) supports no "
            "resource-level permissions; pulling is limited to the asset repository.",
        )
        acknowledge(
            role,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
            "AmazonSSMManagedInstanceCore]",
            "SSM Session Manager replaces SSH (no key pair, port 22 closed); this AWS-managed "
            "policy is the documented minimum for the SSM agent.",
        )
        return role

    def _user_data(self, config: InfraConfig, refs: PipelineRefs) -> ec2.UserData:
        region = Stack.of(self).region
        image_uri = self.asset.image_uri
        environment = pipeline_environment(config, refs.resources, service="fallback")
        environment.update(engine_environment(config))
        # The app checks the key itself here (API_KEY comes from the secret at start).
        environment.update(api_environment(config, gateway_checks_key=False))
        environment.update(auth_environment(config, self.token_issuer))
        environment.update({"AWS_REGION": region, "AWS_DEFAULT_REGION": region})
        env_lines = "\n".join(f"{key}={value}" for key, value in sorted(environment.items()))
        docker_run = " ".join(
            [
                "/usr/bin/docker run --rm",
                f"--name {CONTAINER_NAME}",
                "--read-only",
                f"--tmpfs {CONTAINER_TMPFS}",
                f"--workdir {TASK_ROOT}",
                f"--publish {config.fallback_port}:{config.fallback_port}",
                f"--env-file {APP_ENV_FILE}",
                f"--env-file {SECRET_ENV_FILE}",
                "--log-driver awslogs",
                f"--log-opt awslogs-region={region}",
                f"--log-opt awslogs-group={self.log_group.log_group_name}",
                "--entrypoint python",
                image_uri,
                f"-m uvicorn {ASGI_APP}",
                f"--host 0.0.0.0 --port {config.fallback_port}",
                f"--http {ASGI_PROTOCOL} --timeout-keep-alive {KEEP_ALIVE_SECONDS}",
            ]
        )
        prepare = "\n".join(
            [
                "#!/bin/bash",
                "# Before every (re)start: registry login, image pull, API key (Secrets Manager).",
                "set -euo pipefail",
                f"image={shlex.quote(image_uri)}",
                f"aws ecr get-login-password --region {region} | "
                'docker login --username AWS --password-stdin "${image%%/*}"',
                'docker pull "$image"',
                "key=$(aws secretsmanager get-secret-value "
                f"--region {region} --secret-id {refs.api_key_secret_arn} "
                "--query SecretString --output text)",
                "umask 077",
                f"printf 'API_KEY=%s\\n' \"$key\" > {SECRET_ENV_FILE}",
                "# poll_url and Location on the instance's public name, never the Host header",
                "token=$(curl -sf -X PUT http://169.254.169.254/latest/api/token "
                "-H 'X-aws-ec2-metadata-token-ttl-seconds: 60' || true)",
                'host=$(curl -sf -H "X-aws-ec2-metadata-token: $token" '
                "http://169.254.169.254/latest/meta-data/public-hostname || true)",
                'if [ -n "$host" ]; then '
                f"printf 'PUBLIC_BASE_URL=http://%s:{config.fallback_port}\\n' \"$host\" "
                f">> {SECRET_ENV_FILE}; fi",
            ]
        )
        unit = "\n".join(
            [
                "[Unit]",
                "Description=alertfusion API (uvicorn in the Lambda image)",
                "Requires=docker.service",
                "After=docker.service network-online.target",
                "Wants=network-online.target",
                "",
                "[Service]",
                "RuntimeDirectory=alertfusion",
                "RuntimeDirectoryMode=0700",
                f"ExecStartPre=-/usr/bin/docker rm -f {CONTAINER_NAME}",
                f"ExecStartPre={PREPARE_SCRIPT}",
                f"ExecStart={docker_run}",
                f"ExecStop=/usr/bin/docker stop {CONTAINER_NAME}",
                "Restart=on-failure",
                f"RestartSec={RESTART_SECONDS}",
                "",
                "[Install]",
                "WantedBy=multi-user.target",
            ]
        )
        user_data = ec2.UserData.for_linux()
        user_data.add_commands(
            "set -euxo pipefail",
            "dnf install -y docker",
            "systemctl enable --now docker",
            f"install -d -m 0755 {_parent(APP_ENV_FILE)} {_parent(PREPARE_SCRIPT)}",
            f"cat > {APP_ENV_FILE} <<'ALERTFUSION_ENV'\n{env_lines}\nALERTFUSION_ENV",
            f"chmod 0644 {APP_ENV_FILE}",
            f"cat > {PREPARE_SCRIPT} <<'ALERTFUSION_PREPARE'\n{prepare}\nALERTFUSION_PREPARE",
            f"chmod 0755 {PREPARE_SCRIPT}",
            f"cat > {SERVICE_UNIT} <<'ALERTFUSION_UNIT'\n{unit}\nALERTFUSION_UNIT",
            "systemctl daemon-reload",
            "systemctl enable --now alertfusion.service",
        )
        return user_data


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0]
