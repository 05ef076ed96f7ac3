"""The pipeline's one bucket (uploads, transcripts, results) and its access-log bucket.

Encryption is SSE-S3, not KMS, on purpose: Transcribe reads the media and writes the
transcript with the caller's credentials, the mobile app uploads through presigned POSTs,
and access is already narrowed by IAM per prefix. A customer-managed key would add a key
policy and `kms:*DataKey` grants to every one of those paths and a per-request KMS charge
for no access-control gain here. Versioning is off: objects are short-lived recordings of
people in distress with unique keys; versions would keep deleted audio around after the
retention period, which is the opposite of what the lifecycle rule promises.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from alertfusion import keys

#: the key scheme is alertfusion.keys' (the functions write and read these prefixes)
UPLOADS_PREFIX = keys.UPLOAD_PREFIX
TRANSCRIPTS_PREFIX = keys.TRANSCRIPT_PREFIX
RESULTS_PREFIX = keys.RESULT_PREFIX
EXPIRING_PREFIXES = (UPLOADS_PREFIX, TRANSCRIPTS_PREFIX, RESULTS_PREFIX)

ACCESS_LOG_RETENTION_DAYS = 90
ABORT_INCOMPLETE_UPLOAD_DAYS = 1
CORS_MAX_AGE_SECONDS = 3000


class AudioBucket(Construct):
    """`bucket` (block public access, SSE-S3, TLS only, access logs, lifecycle expiry, CORS for
    browser presigned POSTs from `cors_allowed_origins`: see infra.origins) and `access_logs`
    (where S3 writes the server access logs)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        retention_days: int,
        cors_allowed_origins: list[str],
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.access_logs = self._access_log_bucket(removal_policy)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=False,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="audio/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id=f"expire-{prefix.rstrip('/')}",
                    prefix=prefix,
                    expiration=Duration.days(retention_days),
                )
                for prefix in EXPIRING_PREFIXES
            ]
            + [
                s3.LifecycleRule(
                    id="abort-incomplete-multipart",
                    abort_incomplete_multipart_upload_after=Duration.days(
                        ABORT_INCOMPLETE_UPLOAD_DAYS
                    ),
                )
            ],
            cors=self._cors(cors_allowed_origins),
            removal_policy=removal_policy,
        )

    def _access_log_bucket(self, removal_policy: RemovalPolicy) -> s3.Bucket:
        logs = s3.Bucket(
            self,
            "AccessLogs",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            # S3 server access logging delivers only to SSE-S3 buckets.
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs", expiration=Duration.days(ACCESS_LOG_RETENTION_DAYS)
                )
            ],
            removal_policy=removal_policy,
        )
        return logs

    @staticmethod
    def _cors(origins: list[str]) -> list[s3.CorsRule] | None:
        if not origins:
            return None
        # A browser presigned POST is a multipart form POST to the bucket endpoint.
        return [
            s3.CorsRule(
                allowed_methods=[s3.HttpMethods.POST],
                allowed_origins=origins,
                allowed_headers=["*"],
                exposed_headers=["ETag", "Location"],
                max_age=CORS_MAX_AGE_SECONDS,
            )
        ]

    def objects_arn(self, prefix: str) -> str:
        """ARN pattern of every object under `prefix` (e.g. `uploads/`)."""
        return self.bucket.arn_for_objects(f"{prefix}*")
