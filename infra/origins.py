"""Browser origins: where the page is served from, and which origins the bucket's CORS rule
lets read S3's answer to a presigned POST.

The page (`GET /`) posts recordings straight to the bucket with the presigned POST that
`POST /uploads` returns. A multipart form POST is a CORS "simple request": the browser sends
it whatever the bucket's CORS rule says, and S3 accepts it only if the signed policy (exact
key, audio/*, size range, expiry) matches. CORS decides only whether the page may *read*
S3's answer, so it is not what protects the bucket; without a matching rule the upload
succeeds but the page sees a network error.

The page's own origins are known only after deployment: API Gateway serves it at
`https://{api-id}.execute-api.{region}.{suffix}` and the EC2 fallback at
`http://ec2-{ip}.{region}.compute.{suffix}:{port}`. Naming the API's id in the bucket's rule
would make the pipeline stack import from the API stack, which imports from the pipeline
stack: CDK refuses that cycle (DependencyCycle). A custom resource in the API stack that
rewrites the bucket's CORS configuration would fight CloudFormation's own
CorsConfiguration and add a Lambda function for no security gain. So the rule names the
regional patterns (S3 allows one `*` per origin): any API Gateway or EC2 page in the region
may read S3's answers to presigned POSTs it already holds, which grants nothing.
"""

from __future__ import annotations

from aws_cdk.region_info import RegionInfo

from infra.config import InfraConfig

ANY_ORIGIN = "*"


def domain_suffix(region: str) -> str:
    """`amazonaws.com`, `amazonaws.com.cn` in China (the region is a literal of the config).
    A region newer than this aws-cdk-lib has no entry yet; new regions are commercial ones."""
    suffix = RegionInfo.get(region).domain_suffix
    return suffix or "amazonaws.com"


def execute_api_origins(region: str) -> str:
    """Every API Gateway default endpoint of the region (the page's origin is one of them)."""
    return f"https://*.execute-api.{region}.{domain_suffix(region)}"


def ec2_public_dns_domain(region: str) -> str:
    """The domain of EC2 public DNS names (`ec2-203-0-113-7.<this>`); us-east-1 has its own."""
    if region == "us-east-1":
        return f"compute-1.{domain_suffix(region)}"
    return f"{region}.compute.{domain_suffix(region)}"


def fallback_origins(region: str, port: int) -> str:
    """Every EC2 public DNS name of the region on the fallback's port (plain HTTP)."""
    return f"http://*.{ec2_public_dns_domain(region)}:{port}"


def upload_origins(config: InfraConfig) -> list[str]:
    """The bucket's CORS origins: the configured ones, then the page's own (API Gateway,
    and the fallback when it is deployed); just `*` when the configuration allows any."""
    configured = list(config.cors_allowed_origins)
    if ANY_ORIGIN in configured:
        return [ANY_ORIGIN]
    own = [execute_api_origins(config.region)]
    if config.fallback:
        own.append(fallback_origins(config.region, config.fallback_port))
    return configured + [origin for origin in own if origin not in configured]
