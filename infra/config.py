"""Deployment settings: CDK context (`cdk.json` or `-c key=value`), defaults and checks."""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from alertfusion import limits
from alertfusion.backfill.plan import (
    DEFAULT_BACKFILL_PREFIXES,
    MAP_MAX_CONCURRENCY_LIMIT,
    TRANSCRIBE_CONCURRENT_JOBS_QUOTA,
    TRANSCRIBE_START_TPS_QUOTA,
    BackfillSettings,
    plan_for,
)
from alertfusion.errors import ConfigError
from alertfusion.keys import DEFAULT_TRANSCRIBE_JOB_PREFIX, TRANSCRIBE_JOB_PREFIX_PATTERN
from alertfusion.settings import DEFAULT_TRANSCRIBE_POLICY, TranscribePolicy
from alertfusion.transcribe import DEFAULT_LANGUAGE
from infra.concurrency import UNRESERVED_MINIMUM, ConcurrencyPlan, plan_concurrency

REPO_ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS_FILE = REPO_ROOT / "requirements.txt"

#: The Python of the image and of the zip functions: the one closest to the tests' 3.11 that
#: can run the runtime lock. Lambda's 3.11 is Amazon Linux 2 (glibc 2.26), for which
#: onnxruntime and numpy at the pinned versions publish no wheel; 3.12 runs on Amazon Linux
#: 2023 and is the first Python whose managed images coordinate SnapStart's runtime hooks.
#: `make image-deps` checks every pin of requirements.txt against it (both architectures).
LAMBDA_PYTHON_VERSION = "3.12"
#: glibc of the Amazon Linux release under that Lambda Python (the newest manylinux wheel
#: tag pip accepts there).
LAMBDA_GLIBC = (2, 34)
#: SnapStart's runtime hooks (snapshot_restore_py in the managed images) start at 3.12.
SNAPSTART_MIN_PYTHON = (3, 12)
#: Lambda functions' architectures (-c architecture=...) and the image platform of each.
ARCHITECTURES: dict[str, str] = {"x86_64": "linux/amd64", "arm64": "linux/arm64"}
#: SnapStart caps a function's /tmp at 512 MiB.
SNAPSTART_MAX_EPHEMERAL_MIB = 512
#: an s3:// bundle location: bucket and key (a bundle's directory or its manifest's folder)
_S3_BUNDLE_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^*?,\s]+$")
#: /tmp per s3:// bundle in the functions that load bundles (each is downloaded there once
#: per sandbox), and the most Lambda gives a function
S3_BUNDLE_EPHEMERAL_MIB = 2048
MAX_EPHEMERAL_MIB = 10240

#: CloudWatch Logs accepts only these retention periods (days -> aws_logs.RetentionDays).
LOG_RETENTION_DAYS: dict[int, str] = {
    1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK", 14: "TWO_WEEKS",
    30: "ONE_MONTH", 60: "TWO_MONTHS", 90: "THREE_MONTHS", 120: "FOUR_MONTHS",
    150: "FIVE_MONTHS", 180: "SIX_MONTHS", 365: "ONE_YEAR", 400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS", 731: "TWO_YEARS", 1096: "THREE_YEARS", 1827: "FIVE_YEARS",
    2192: "SIX_YEARS", 2557: "SEVEN_YEARS", 2922: "EIGHT_YEARS", 3288: "NINE_YEARS",
    3653: "TEN_YEARS",
}  # fmt: skip

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_HTTPS_URL = re.compile(r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[^\s?#]*)?$")


def _csv_list(value: Any) -> Any:
    """`-c key=a,b` arrives as one string; cdk.json may hold a real list."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CsvList = Annotated[list[str], BeforeValidator(_csv_list)]


def powertools_version_from_requirements(path: Path = REQUIREMENTS_FILE) -> str:
    """The Powertools version requirements.txt pins (the zip functions' layer matches it)."""
    for line in path.read_text().splitlines():
        match = re.match(r"^aws-lambda-powertools==([0-9][0-9.]*)\s*$", line.strip())
        if match:
            return match.group(1)
    raise ConfigError(f"{path.name} does not pin aws-lambda-powertools")


class InfraConfig(BaseModel):
    """Every context setting of the app. Field descriptions are docs/OPERATIONS.md's settings
    table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: str = Field(
        "prod",
        pattern=r"^[a-z][a-z0-9-]{0,15}$",
        description="deployment stage: part of every stack name and the API stage name",
    )
    region: str = Field(
        "ap-northeast-2",
        pattern=r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$",
        description="AWS region (Transcribe must support ko-KR there)",
    )
    account: str | None = Field(
        None,
        pattern=r"^[0-9]{12}$",
        description="AWS account id; default: the CLI's current account (CDK_DEFAULT_ACCOUNT)",
    )
    bundle: str = Field(
        "build/models/demo",
        min_length=1,
        description="model bundle: a directory inside the repository (baked into the image) "
        "or an s3://bucket/key URI (downloaded at cold start)",
    )
    bundles: CsvList = Field(
        default_factory=list,
        description="named bundles served beside the default, each NAME=s3://bucket/key "
        "(comma-separated); a request or upload chooses one with `bundle`; each is read from "
        "S3 when first used",
    )
    classifier_memory_mb: int = Field(3008, ge=1024, le=10240, description="classifier memory")
    classifier_timeout_seconds: int = Field(
        60, ge=10, le=900, description="classifier timeout (the work queue hides a task 6x this)"
    )
    api_memory_mb: int = Field(3008, ge=1024, le=10240, description="API function memory")
    api_timeout_seconds: int = Field(
        29, ge=5, le=29, description="API function timeout (API Gateway stops waiting at 29 s)"
    )
    starter_memory_mb: int = Field(256, ge=128, le=3008, description="starter memory")
    sweeper_memory_mb: int = Field(256, ge=128, le=3008, description="sweeper memory")
    upload_retention_days: int = Field(
        7, ge=1, le=3650, description="days before uploads/, transcripts/, results/ expire"
    )
    job_ttl_days: int = Field(
        limits.JOB_TTL_DAYS, ge=1, le=3650, description="days before a job record expires"
    )
    transcribe_policy: TranscribePolicy = Field(
        DEFAULT_TRANSCRIBE_POLICY,
        description="always transcribe, or only when the audio gate says alert",
    )
    transcribe_language: str = Field(
        DEFAULT_LANGUAGE, pattern=r"^[a-z]{2}-[A-Z]{2}$", description="Transcribe language code"
    )
    transcribe_job_prefix: str = Field(
        DEFAULT_TRANSCRIBE_JOB_PREFIX,
        pattern=TRANSCRIBE_JOB_PREFIX_PATTERN,
        description="Transcribe job-name prefix; the EventBridge rule matches only it",
    )
    max_upload_bytes: int = Field(
        limits.MAX_UPLOAD_BYTES, ge=1024, le=2 * 1024**3, description="largest accepted upload"
    )
    min_audio_seconds: float = Field(
        limits.MIN_AUDIO_SECONDS, gt=0, description="shortest accepted recording"
    )
    max_audio_seconds: float = Field(
        limits.MAX_AUDIO_SECONDS, gt=0, le=14400, description="longest recording"
    )
    stuck_after_seconds: int = Field(
        limits.STUCK_AFTER_SECONDS,
        ge=60,
        description="sweeper checks TRANSCRIBING jobs older than this",
    )
    hard_timeout_seconds: int = Field(
        limits.HARD_TIMEOUT_SECONDS,
        ge=300,
        description="a job not DONE after this ends FAILED (TIMEOUT)",
    )
    cors_allowed_origins: CsvList = Field(
        default_factory=list,
        description="browser origins of other sites allowed to call the API and to upload with "
        "a presigned POST (comma-separated; * for any); empty: the API answers no CORS "
        "(mobile apps, servers and the API's own page need none)",
    )
    api_throttle_rate_limit: float = Field(
        10.0, gt=0, le=10000, description="API requests per second (steady state)"
    )
    api_throttle_burst_limit: int = Field(20, ge=1, le=5000, description="API burst")
    api_quota_per_day: int = Field(10000, ge=1, description="API requests per key and day")
    log_retention_days: int = Field(30, description="CloudWatch Logs retention")
    alarm_email: str | None = Field(None, description="e-mail subscribed to the alarm topic")
    fallback: bool = Field(False, description="also deploy the EC2 t2.medium fallback stack")
    fallback_allowed_cidrs: CsvList = Field(
        default_factory=list,
        description="IPv4 CIDRs allowed to reach the fallback (comma-separated); "
        "required when fallback=true",
    )
    fallback_port: int = Field(8000, ge=1024, le=65535, description="the fallback's API port")
    powertools_version: str = Field(
        default_factory=powertools_version_from_requirements,
        pattern=r"^([0-9]+\.[0-9]+\.[0-9]+|latest)$",
        description="Powertools layer version (default: the version requirements.txt pins)",
    )
    removal_policy: Literal["retain", "destroy"] = Field(
        "retain", description="what `cdk destroy` does with the buckets and the jobs table"
    )
    architecture: Literal["x86_64", "arm64"] = Field(
        "x86_64",
        description="every function's architecture (arm64: Graviton, lower price per "
        "GB-second); the image is built for the same platform",
    )
    snapstart: bool = Field(
        False,
        description="SnapStart on the classifier and the API function: published versions "
        "restored from a snapshot taken after the engine loaded",
    )
    provisioned: int = Field(
        0,
        ge=0,
        le=100,
        description="provisioned concurrency on the classifier's and the API function's "
        "`live` alias (0: none)",
    )
    # ---- concurrency (infra.concurrency sizes every function's reservation from these) ----
    account_concurrency: int = Field(
        1000,
        gt=UNRESERVED_MINIMUM,
        description="the account's Lambda concurrent executions quota in the region (Service "
        "Quotas); the functions' reservations are sized from it",
    )
    concurrency_share: float = Field(
        0.8,
        gt=0,
        le=1,
        description="share of the account's reservable concurrency this deployment reserves",
    )
    # ---- end-user identity (functions.api.auth) and per-user quotas (functions.api.quotas) ----
    auth: Literal["api_key", "cognito", "oidc"] = Field(
        "api_key",
        description="who /uploads, /jobs, /predict and /predict_s3 accept: the API key "
        "(api_key), users of a Cognito user pool the stack creates (cognito), or tokens of "
        "an existing OpenID Connect issuer (oidc)",
    )
    oidc_issuer: str | None = Field(
        None, description="with auth=oidc: the issuer's URL (https; `iss` of its tokens)"
    )
    oidc_audience: CsvList = Field(
        default_factory=list,
        description="with auth=oidc: the accepted audiences (`aud`; comma-separated)",
    )
    cognito_self_sign_up: bool = Field(
        True,
        description="with auth=cognito: people create their own account on the hosted "
        "sign-in page (e-mail verified); false: only administrators create accounts",
    )
    quota_uploads_per_hour: int = Field(
        limits.QUOTA_UPLOADS_PER_HOUR, ge=1, description="uploads per signed-in user and hour"
    )
    quota_uploads_per_day: int = Field(
        limits.QUOTA_UPLOADS_PER_DAY, ge=1, description="uploads per signed-in user and day"
    )
    quota_predictions_per_hour: int = Field(
        limits.QUOTA_PREDICTIONS_PER_HOUR,
        ge=1,
        description="/predict and /predict_s3 calls per signed-in user and hour",
    )
    quota_predictions_per_day: int = Field(
        limits.QUOTA_PREDICTIONS_PER_DAY,
        ge=1,
        description="/predict and /predict_s3 calls per signed-in user and day",
    )
    # ---- backfills (alertfusion.backfill.plan.BackfillSettings reads the same names) ----
    backfill_prefixes: CsvList = Field(
        default_factory=lambda: list(DEFAULT_BACKFILL_PREFIXES),
        description="prefixes of the audio bucket a backfill may read (comma-separated "
        "folders ending in /); the functions may read exactly these",
    )
    transcribe_concurrent_jobs_quota: int = Field(
        TRANSCRIBE_CONCURRENT_JOBS_QUOTA,
        ge=1,
        description="the account's Transcribe concurrent batch jobs quota (sizes backfills)",
    )
    transcribe_start_tps_quota: float = Field(
        TRANSCRIBE_START_TPS_QUOTA,
        gt=0,
        description="the account's StartTranscriptionJob requests-per-second quota",
    )
    backfill_quota_share: float = Field(
        0.5, gt=0, le=1, description="share of both Transcribe quotas a backfill may use"
    )
    backfill_batch_size: int = Field(10, ge=1, le=100, description="objects per child workflow")
    backfill_tolerated_failure_percentage: float = Field(
        5.0, ge=0, le=100, description="failed child workflows a backfill tolerates (%)"
    )
    backfill_poll_seconds: int = Field(
        20, ge=1, le=3600, description="seconds between a child workflow's checks of its jobs"
    )

    @field_validator("alarm_email", "account", "oidc_issuer", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value in ("", None) else value

    @model_validator(mode="after")
    def _check(self) -> InfraConfig:
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            raise ValueError(
                f"log_retention_days must be one of {', '.join(map(str, LOG_RETENTION_DAYS))}"
            )
        if self.alarm_email is not None and not _EMAIL.match(self.alarm_email):
            raise ValueError("alarm_email is not an e-mail address")
        if self.min_audio_seconds >= self.max_audio_seconds:
            raise ValueError("min_audio_seconds must be below max_audio_seconds")
        if self.stuck_after_seconds >= self.hard_timeout_seconds:
            raise ValueError("stuck_after_seconds must be below hard_timeout_seconds")
        for origin in self.cors_allowed_origins:
            if origin != "*" and not re.match(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$", origin):
                raise ValueError(f"cors_allowed_origins: {origin!r} is not an origin")
        for cidr in self.fallback_allowed_cidrs:
            _check_cidr(cidr)
        if self.fallback and not self.fallback_allowed_cidrs:
            raise ValueError(
                "fallback=true needs fallback_allowed_cidrs, the IPv4 ranges allowed to reach "
                "the instance: pass -c fallback_allowed_cidrs=203.0.113.0/24,198.51.100.7/32 "
                '(or set "fallback_allowed_cidrs" in the context of cdk.json)'
            )
        self._check_bundle()
        self._check_named_bundles()
        self._check_deploy_options()
        concurrency = self.concurrency
        if self.provisioned > min(concurrency.classifier, concurrency.api):
            raise ValueError(
                f"provisioned={self.provisioned} is more than the classifier's "
                f"({concurrency.classifier}) or the API function's ({concurrency.api}) "
                "reserved concurrency"
            )
        self._check_auth()
        try:
            self.backfill_settings()
        except ValidationError as exc:
            raise ValueError(f"backfill settings: {exc.errors()[0]['msg']}") from None
        for prefix in self.backfill_prefixes:
            if prefix.startswith(("transcripts/", "results/", "backfills/")):
                raise ValueError(f"backfill_prefixes: {prefix!r} holds the pipeline's outputs")
        return self

    def _check_auth(self) -> None:
        if self.auth == "oidc":
            if not self.oidc_issuer or not self.oidc_audience:
                raise ValueError(
                    "auth=oidc needs the issuer and the audiences its tokens carry: pass "
                    "-c oidc_issuer=https://login.example.com -c oidc_audience=<client id>"
                )
            if not re.match(
                r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[^\s?#]*)?$", self.oidc_issuer
            ):
                raise ValueError(f"oidc_issuer: {self.oidc_issuer!r} is not an https URL")
        elif self.oidc_issuer or self.oidc_audience:
            raise ValueError(f"oidc_issuer and oidc_audience need auth=oidc (auth={self.auth})")
        for kind in ("uploads", "predictions"):
            if getattr(self, f"quota_{kind}_per_hour") > getattr(self, f"quota_{kind}_per_day"):
                raise ValueError(f"quota_{kind}_per_hour is above quota_{kind}_per_day")

    def _check_deploy_options(self) -> None:
        if self.fallback and self.architecture != "x86_64":
            raise ValueError(
                "architecture=arm64 with fallback=true: the fallback is an x86_64 t2.medium "
                "that runs the functions' image, which would then be built for arm64; deploy "
                "the fallback with architecture=x86_64"
            )
        if self.snapstart:
            python = tuple(int(part) for part in LAMBDA_PYTHON_VERSION.split("."))
            if python < SNAPSTART_MIN_PYTHON:
                raise ValueError(
                    f"snapstart=true needs Python {'.'.join(map(str, SNAPSTART_MIN_PYTHON))} "
                    f"or later in the image; it runs {LAMBDA_PYTHON_VERSION}"
                )
            if self.bundle_is_s3:
                raise ValueError(
                    "snapstart=true with an s3:// bundle: SnapStart allows at most "
                    f"{SNAPSTART_MAX_EPHEMERAL_MIB} MiB of /tmp, where an S3 bundle is "
                    "downloaded; bake the bundle into the image (a bundle directory under "
                    "build/models/) to use SnapStart"
                )
            if self.bundles:
                raise ValueError(
                    "snapstart=true with named bundles: SnapStart allows at most "
                    f"{SNAPSTART_MAX_EPHEMERAL_MIB} MiB of /tmp, where each named bundle is "
                    "downloaded from S3; deploy them without SnapStart"
                )

    def _check_bundle(self) -> None:
        if self.bundle.startswith("s3://"):
            if not _S3_BUNDLE_URI.match(self.bundle):
                raise ValueError(f"bundle {self.bundle!r} is not an s3://bucket/key URI")
            return
        path = self.bundle_dir
        try:
            path.relative_to(REPO_ROOT)
        except ValueError:
            raise ValueError(
                f"bundle {self.bundle!r} is outside the repository: the image is built from "
                "the repository, so copy the bundle under build/models/ (or upload it to S3 "
                "and pass an s3:// URI)"
            ) from None
        if not (path / "manifest.json").is_file():
            raise ValueError(
                f"bundle {self.bundle!r} has no manifest.json: run `make bundle-demo` for the "
                "demo bundle or `python -m model_export` for your checkpoints"
            )

    def _check_named_bundles(self) -> None:
        from alertfusion.catalog import BUNDLE_NAME_PATTERN, DEFAULT_BUNDLE

        names: set[str] = set()
        for item in self.bundles:
            name, sep, uri = item.partition("=")
            if not sep or not re.match(BUNDLE_NAME_PATTERN, name) or name == DEFAULT_BUNDLE:
                raise ValueError(
                    f"bundles: {item!r} is not NAME=s3://bucket/key (NAME matching "
                    f"{BUNDLE_NAME_PATTERN}, not {DEFAULT_BUNDLE!r}, which is the bundle "
                    "setting's)"
                )
            if name in names:
                raise ValueError(f"bundles: {name!r} is named twice")
            names.add(name)
            if not _S3_BUNDLE_URI.match(uri):
                raise ValueError(
                    f"bundles: {name}={uri} is not an s3://bucket/key URI; named bundles are "
                    "read from S3 (only the default bundle is baked into the image): upload "
                    f"it, e.g. `aws s3 sync build/models/{name} s3://BUCKET/models/{name}`, "
                    "and name its URI"
                )
        if (self.bundle_ephemeral_mib or 0) > MAX_EPHEMERAL_MIB:
            raise ValueError(
                f"bundles: {len(self.s3_bundles)} s3:// bundles need "
                f"{self.bundle_ephemeral_mib} MiB of /tmp in the functions that load them "
                f"({S3_BUNDLE_EPHEMERAL_MIB} MiB each), more than Lambda's {MAX_EPHEMERAL_MIB}"
            )

    # ---- derived values -------------------------------------------------------------------

    def backfill_settings(self) -> BackfillSettings:
        """The backfill sizing these settings give (the state machine and the functions).
        When the default bundle transcribes itself, Transcribe's quotas bound nothing: the
        map is as wide as the batches that keep the classifier's work queue busy, measured
        on the plan a Transcribe-sized map gives (the wider map then takes a little of the
        classifier's share, so the queue stays full)."""
        width = None
        if self.default_transcribes_itself:
            first = self._concurrency_for(
                plan_for(self.transcribe_policy, self._backfill_settings(None)).max_concurrency
            )
            width = min(
                MAP_MAX_CONCURRENCY_LIMIT, math.ceil(first.work_queue / self.backfill_batch_size)
            )
        return self._backfill_settings(width)

    def _backfill_settings(self, map_width: int | None) -> BackfillSettings:
        values: dict[str, Any] = {
            "TRANSCRIBE_CONCURRENT_JOBS_QUOTA": self.transcribe_concurrent_jobs_quota,
            "TRANSCRIBE_START_TPS_QUOTA": self.transcribe_start_tps_quota,
            "BACKFILL_QUOTA_SHARE": self.backfill_quota_share,
            "BACKFILL_BATCH_SIZE": self.backfill_batch_size,
            "BACKFILL_TOLERATED_FAILURE_PERCENTAGE": self.backfill_tolerated_failure_percentage,
            "BACKFILL_POLL_SECONDS": self.backfill_poll_seconds,
            "BACKFILL_PREFIXES": ",".join(self.backfill_prefixes),
        }
        if map_width is not None:
            values["BACKFILL_MAP_WIDTH"] = map_width
        return BackfillSettings.model_validate(values)

    @property
    def concurrency(self) -> ConcurrencyPlan:
        """Every function's reserved concurrency and the work queue's maximum
        (infra.concurrency)."""
        return self._concurrency_for(
            plan_for(self.transcribe_policy, self.backfill_settings()).max_concurrency
        )

    def _concurrency_for(self, backfill_map_width: int) -> ConcurrencyPlan:
        return plan_concurrency(
            account_concurrency=self.account_concurrency,
            concurrency_share=self.concurrency_share,
            transcribe_concurrent_jobs_quota=self.transcribe_concurrent_jobs_quota,
            transcribe_start_tps_quota=self.transcribe_start_tps_quota,
            backfill_map_width=backfill_map_width,
            # only jobs of a bundle that needs Transcribe wait for one
            transcribe_bounds_classifier=self.may_start_transcribe,
        )

    @property
    def may_start_transcribe(self) -> bool:
        """Whether any bundle served may need an Amazon Transcribe job: not when the only
        bundle is a baked one that transcribes itself (then no function may start one).
        Named bundles are read at run time and may change without a deploy, so they keep
        the permission."""
        return not self.default_transcribes_itself or bool(self.bundles)

    @cached_property
    def default_transcribes_itself(self) -> bool:
        """The default bundle is baked and its recipe transcribes with its own speech-to-text
        model (an S3 bundle is not read at synth). Read once: the concurrency plan, the
        backfill sizing and the permissions all ask."""
        if self.bundle_is_s3:
            return False
        from alertfusion.catalog import manifest_transcript_source

        return manifest_transcript_source(self.bundle_dir / "manifest.json") == "model"

    @property
    def versioned(self) -> bool:
        """The image functions publish a version and a `live` alias that their callers
        invoke (SnapStart restores only published versions; provisioned concurrency needs a
        version or alias)."""
        return self.snapstart or self.provisioned > 0

    @property
    def image_platform(self) -> str:
        return ARCHITECTURES[self.architecture]

    @property
    def bundle_is_s3(self) -> bool:
        return self.bundle.startswith("s3://")

    @property
    def named_bundles(self) -> dict[str, str]:
        """Name -> s3:// URI of the bundles served beside the default (MODEL_BUNDLES)."""
        return dict(item.partition("=")[::2] for item in self.bundles)

    @property
    def s3_bundles(self) -> list[str]:
        """Every s3:// bundle the image functions may read: the default's, then the named."""
        return ([self.bundle] if self.bundle_is_s3 else []) + list(self.named_bundles.values())

    @property
    def bundle_ephemeral_mib(self) -> int | None:
        """The /tmp of the functions that load bundles (the classifier, the API): room for
        each s3:// bundle; Lambda's default without one."""
        return S3_BUNDLE_EPHEMERAL_MIB * len(self.s3_bundles) or None

    @property
    def bundle_dir(self) -> Path:
        """The bundle directory (a baked bundle), resolved against the repository root."""
        return (REPO_ROOT / self.bundle).resolve()

    @property
    def bundle_context_path(self) -> str:
        """The bundle directory relative to the repository (the Docker build context)."""
        return self.bundle_dir.relative_to(REPO_ROOT).as_posix()

    @property
    def bundle_s3_parts(self) -> tuple[str, str]:
        """(bucket, key) of an s3:// bundle, the key without a trailing slash."""
        return s3_parts(self.bundle)

    def stack_name(self, component: str) -> str:
        return f"alertfusion-{self.stage}-{component}"


def s3_parts(uri: str) -> tuple[str, str]:
    """(bucket, key) of an s3:// bundle URI, the key without a trailing slash."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key.rstrip("/")


def _check_cidr(cidr: str) -> None:
    try:
        network = ipaddress.IPv4Network(cidr, strict=True)
    except ValueError as exc:
        raise ValueError(f"fallback_allowed_cidrs: {cidr!r} is not an IPv4 CIDR ({exc})") from None
    if network.prefixlen == 0:
        raise ValueError(
            "fallback_allowed_cidrs: 0.0.0.0/0 would open the instance to the whole internet; "
            "list the ranges your clients use"
        )


SETTINGS: tuple[str, ...] = tuple(InfraConfig.model_fields)


def load_config(context: dict[str, Any]) -> InfraConfig:
    """Validate the app's context. Unknown plain keys are refused (a typo would silently
    deploy a default), as is any invalid value; the message names the key and the fix."""
    own = {key: value for key, value in context.items() if key in SETTINGS}
    unknown = sorted(
        key for key in context if re.fullmatch(r"[a-z][a-z0-9_]*", key) and key not in SETTINGS
    )
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, SETTINGS, n=1)
            hints.append(f"{key} (did you mean {close[0]}?)" if close else key)
        raise ConfigError(
            "unknown context setting(s): " + ", ".join(hints) + f"; known: {', '.join(SETTINGS)}"
        )
    try:
        return InfraConfig(**own)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(part) for part in err["loc"])
            message = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"{loc}: {message}" if loc else message)
        raise ConfigError("invalid context: " + "; ".join(problems)) from exc
