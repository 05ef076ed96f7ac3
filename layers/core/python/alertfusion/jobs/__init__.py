"""Jobs: the job model, the jobs table's shape and the job store on DynamoDB."""

from alertfusion.dynamodb import now_utc, utc_iso
from alertfusion.jobs.model import (
    DELETION_STATUSES,
    FINAL_STATUSES,
    Job,
    JobStatus,
    Stage,
    TranscribeState,
    UploadInfo,
    UtcDateTime,
    Verdict,
    can_transition,
    sources_of,
)
from alertfusion.jobs.store import JobStore
from alertfusion.jobs.table import STATUS_INDEX, create_jobs_table

__all__ = [
    "DELETION_STATUSES",
    "FINAL_STATUSES",
    "STATUS_INDEX",
    "Job",
    "JobStatus",
    "JobStore",
    "Stage",
    "TranscribeState",
    "UploadInfo",
    "UtcDateTime",
    "Verdict",
    "can_transition",
    "create_jobs_table",
    "now_utc",
    "sources_of",
    "utc_iso",
]
