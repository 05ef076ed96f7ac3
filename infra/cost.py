"""Monthly cost of a deployment for a stated load, computed from measured durations.

    python -m infra.cost                      # the example load of docs/OPERATIONS.md
    python -m infra.cost --recordings 300000 --classifier-audio-ms 420 --fallback --json

The durations (billed milliseconds per invocation) are inputs: take them from `make bench`
and from the functions' REPORT log lines after a deploy; the defaults are placeholders.
Prices are AWS list prices for Asia Pacific (Seoul), ap-northeast-2, in USD, without free
tier, taxes or data transfer, written down on PRICES_WRITTEN from AWS's published pricing
pages as known then (the pages were not reachable from the build machine; only the
t2.medium rate was cross-checked against public Seoul price tables). Check them in the AWS
Pricing Calculator before quoting a number.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, fields

# the price table lives in the core library, which the API and the backfill estimate read too
from alertfusion.pricing import PRICES, PRICES_WRITTEN, TRANSCRIBE_MINIMUM_SECONDS

__all__ = [
    "PRICES",
    "PRICES_WRITTEN",
    "TRANSCRIBE_MINIMUM_SECONDS",
    "Load",
    "main",
    "monthly_cost",
]

HOURS_PER_MONTH = 730
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
#: Lambda's SQS event source long-polls with 5 pollers even when the queue is empty
#: (one 20 s ReceiveMessage per poller): 5 * 3 per minute.
SQS_IDLE_POLLS_PER_MONTH = 5 * 3 * 60 * HOURS_PER_MONTH
SWEEPS_PER_MONTH = SECONDS_PER_MONTH // 300


@dataclass(frozen=True)
class Load:
    """The stated load and the measured durations (billed ms per invocation)."""

    #: recordings through the asynchronous path (POST /uploads -> S3 -> pipeline)
    recordings: int = 100_000
    #: synchronous POST /predict calls (the answer in the same request)
    predict_requests: int = 20_000
    mean_audio_seconds: float = 10.0
    mean_upload_bytes: int = 320_000  # 10 s of 16 kHz 16-bit mono WAV
    #: GET /jobs/{id} per asynchronous recording (the app polls until DONE)
    polls_per_recording: float = 4.0
    #: share of recordings whose verdict is not `regular` (EmergencyDetected x2 stages)
    emergency_share: float = 0.05
    transcribe_policy: str = "always"  # or "gated": only non-regular audio is transcribed
    retention_days: int = 7
    # ---- measured durations: PLACEHOLDERS until `make bench` / a deploy measures them ----
    starter_ms: float = 250.0
    classifier_audio_ms: float = 400.0  # audio stage: decode + features + both DenseNets
    classifier_final_ms: float = 450.0  # finalize: + KoBERT on the transcript + fusion
    api_predict_ms: float = 800.0  # POST /predict end to end inside Lambda
    api_light_ms: float = 30.0  # POST /uploads, GET /jobs/{id}
    sweeper_ms: float = 300.0
    #: memory settings (MB), the context defaults
    starter_memory_mb: int = 256
    classifier_memory_mb: int = 3008
    api_memory_mb: int = 3008
    sweeper_memory_mb: int = 256
    log_bytes_per_invocation: int = 1500
    xray_traced_share: float = 0.06  # default sampling: 1 request/s + 5 %
    alarms: int = 18  # what the stacks define (13 pipeline + 5 API)
    image_gb: float = 1.2
    fallback: bool = False
    alarm_topic: bool = True


def _lambda(invocations: float, ms: float, memory_mb: int) -> float:
    gb_seconds = invocations * ms / 1000 * memory_mb / 1024
    return (
        invocations * PRICES["lambda_request"][0] + gb_seconds * PRICES["lambda_gb_second_x86"][0]
    )


def monthly_cost(load: Load) -> dict[str, float]:
    """USD per month by service."""
    p = {key: value[0] for key, value in PRICES.items()}
    n = load.recordings
    emergencies = n * load.emergency_share
    transcribed = n if load.transcribe_policy == "always" else emergencies
    billed_seconds = max(load.mean_audio_seconds, TRANSCRIBE_MINIMUM_SECONDS)
    api_light_calls = n * (1 + load.polls_per_recording)  # POST /uploads + polls
    lambda_invocations = (
        n  # starter
        + n
        + transcribed  # classifier: audio stage + finalize
        + api_light_calls
        + load.predict_requests
        + SWEEPS_PER_MONTH
    )

    cost = {
        "Transcribe": transcribed * billed_seconds / 60 * p["transcribe_minute"],
        "Lambda": (
            _lambda(n, load.starter_ms, load.starter_memory_mb)
            + _lambda(n, load.classifier_audio_ms, load.classifier_memory_mb)
            + _lambda(transcribed, load.classifier_final_ms, load.classifier_memory_mb)
            + _lambda(api_light_calls, load.api_light_ms, load.api_memory_mb)
            + _lambda(load.predict_requests, load.api_predict_ms, load.api_memory_mb)
            + _lambda(SWEEPS_PER_MONTH, load.sweeper_ms, load.sweeper_memory_mb)
        ),
        "API Gateway": (api_light_calls + load.predict_requests) * p["apigw_rest_request"],
        "S3": (
            # upload POST, transcript PUT (Transcribe), result PUT
            n * (1 + 1 + 1) * p["s3_put_request"]
            # starter header probe (2 ranged GETs), classifier audio x2, transcript, Transcribe
            + n * (2 + 2 + 1 + 1) * p["s3_get_request"]
            + n * load.mean_upload_bytes / 1e9 * load.retention_days / 30 * p["s3_storage_gb_month"]
        ),
        "DynamoDB": (
            # idempotency item, create, RECEIVED, TRANSCRIBING, preliminary, DONE (items < 1 KB)
            n * 6 * p["dynamodb_write_unit"]
            # strongly consistent reads by the functions + eventually consistent polls
            + (n * 4 + api_light_calls * 0.5) * p["dynamodb_read_unit"]
        ),
        "SQS": (n * 3 + SQS_IDLE_POLLS_PER_MONTH) * p["sqs_request"],
        "EventBridge": emergencies * 2 * p["eventbridge_custom_event"],
        "CloudWatch": (
            lambda_invocations * load.log_bytes_per_invocation / 1e9 * p["logs_ingest_gb"]
            + load.alarms * p["alarm_month"]
        ),
        "X-Ray": lambda_invocations * load.xray_traced_share * p["xray_trace"],
        "Secrets Manager, KMS, ECR": (
            p["secret_month"]
            + (p["kms_key_month"] if load.alarm_topic else 0.0)
            + load.image_gb * p["ecr_storage_gb_month"]
        ),
    }
    if load.fallback:
        cost["EC2 fallback"] = (
            HOURS_PER_MONTH * (p["ec2_t2_medium_hour"] + p["public_ipv4_hour"])
            + 30 * p["ebs_gp3_gb_month"]
            + p["ec2_detailed_monitoring_month"]
        )
    return {service: round(value, 2) for service, value in cost.items()}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for field in fields(Load):
        flag = "--" + field.name.replace("_", "-")
        if field.type in (bool, "bool"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default)
        else:
            kind = {"int": int, "float": float, "str": str}[str(field.type)]
            parser.add_argument(flag, type=kind, default=field.default)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = vars(_parser().parse_args(argv))
    as_json = args.pop("json")
    load = Load(**args)
    cost = monthly_cost(load)
    total = round(math.fsum(cost.values()), 2)
    if as_json:
        sys.stdout.write(
            json.dumps({"load": asdict(load), "usd_per_month": cost, "total": total}, indent=2)
            + "\n"
        )
        return 0
    width = max(len(service) for service in cost)
    lines = [f"{service:<{width}}  {value:>10,.2f}" for service, value in cost.items()]
    lines.append(f"{'total (USD/month)':<{width}}  {total:>10,.2f}")
    lines.append(f"(ap-northeast-2 list prices written {PRICES_WRITTEN}; durations are inputs)")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
