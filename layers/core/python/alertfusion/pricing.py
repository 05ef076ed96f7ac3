"""AWS list prices the cost model (infra/cost.py) and the backfill estimate share.

Asia Pacific (Seoul), ap-northeast-2, USD, without free tier, taxes or data transfer, as
written down on PRICES_WRITTEN from AWS's published pricing pages (see infra/cost.py for how
they were checked). One table, so that no other module states a price of its own.
"""

from __future__ import annotations

PRICES_WRITTEN = "2026-11-21"

#: (USD, unit, source): the service's public pricing page for ap-northeast-2 as known on
#: PRICES_WRITTEN (not fetched by this script).
PRICES: dict[str, tuple[float, str, str]] = {
    "lambda_gb_second_x86": (0.0000166667, "per GB-second", "AWS Lambda pricing page"),
    "lambda_request": (0.20 / 1e6, "per request", "AWS Lambda pricing page"),
    "transcribe_minute": (
        0.024,
        "per audio minute, billed per second, minimum 15 s per job (tier 1)",
        "Amazon Transcribe pricing page (batch, standard)",
    ),
    "apigw_rest_request": (3.50 / 1e6, "per REST API request (first 333M)", "API Gateway pricing"),
    "s3_storage_gb_month": (0.025, "per GB-month, S3 Standard", "Amazon S3 pricing page"),
    "s3_put_request": (0.0045 / 1000, "per PUT/POST/COPY/LIST", "Amazon S3 pricing page"),
    "s3_get_request": (0.00035 / 1000, "per GET/HEAD", "Amazon S3 pricing page"),
    "dynamodb_write_unit": (0.7125 / 1e6, "per on-demand write request unit", "DynamoDB pricing"),
    "dynamodb_read_unit": (0.1425 / 1e6, "per on-demand read request unit", "DynamoDB pricing"),
    "sqs_request": (0.40 / 1e6, "per standard-queue request", "Amazon SQS pricing page"),
    "eventbridge_custom_event": (1.00 / 1e6, "per custom event published", "EventBridge pricing"),
    "logs_ingest_gb": (0.76, "per GB ingested (standard)", "CloudWatch pricing page"),
    "alarm_month": (0.10, "per standard-resolution metric alarm", "CloudWatch pricing page"),
    "xray_trace": (5.00 / 1e6, "per trace recorded", "AWS X-Ray pricing page"),
    "secret_month": (0.40, "per secret", "Secrets Manager pricing page"),
    "kms_key_month": (1.00, "per customer-managed key (alarm topic)", "AWS KMS pricing page"),
    "ecr_storage_gb_month": (0.10, "per GB-month", "Amazon ECR pricing page"),
    "ec2_t2_medium_hour": (
        0.0576,
        "per hour, Linux on-demand",
        "EC2 on-demand pricing; cross-checked with two public Seoul price tables",
    ),
    "stepfunctions_state_transition": (
        0.0271 / 1000,
        "per Standard-workflow state transition (retries included)",
        "AWS Step Functions pricing page, Seoul row (written down 2026-12-05)",
    ),
    "ebs_gp3_gb_month": (0.0912, "per GB-month", "Amazon EBS pricing page"),
    "public_ipv4_hour": (0.005, "per public IPv4 address-hour", "Amazon VPC pricing page"),
    "ec2_detailed_monitoring_month": (2.10, "7 metrics x 0.30 USD", "CloudWatch pricing page"),
}

#: Transcribe bills every job at least this long
TRANSCRIBE_MINIMUM_SECONDS = 15


def price(name: str) -> float:
    """The USD amount of one PRICES entry."""
    return PRICES[name][0]
