"""When a client should poll a pending job again (`Retry-After` of `GET /jobs/{id}`).

The wait follows what the job waits for:

* UPLOAD_PENDING (the app has not uploaded yet): 2 s.
* received, no preliminary verdict yet (the audio stage takes seconds): 1 s.
* waiting for Transcribe: Transcribe usually finishes a short recording
  `expected_s` (setting TRANSCRIBE_EXPECTED_SECONDS, default 15 s) +
  `TRANSCRIBE_PER_AUDIO_S` x duration after it started, so the wait
  is the time left until then, between 2 and 10 s: it shrinks as the job ages. A job
  past that estimate is polled every 2 s at first, then less often (+1 s per 10 s
  overdue, at most 15 s): it may wait minutes for the sweeper.
"""

from __future__ import annotations

import math
from datetime import datetime

from alertfusion.jobs import Job, JobStatus

UPLOAD_PENDING_S = 2
AUDIO_STAGE_S = 1
TRANSCRIBE_PER_AUDIO_S = 0.5
MIN_WAIT_S = 2
MAX_WAIT_S = 10
MAX_OVERDUE_WAIT_S = 15


def retry_after(job: Job, now: datetime, expected_s: float = 15.0) -> int | None:
    """Seconds until the next poll is worth it; None once the job is final."""
    if job.is_final:
        return None
    if job.status is JobStatus.UPLOAD_PENDING:
        return UPLOAD_PENDING_S
    if job.preliminary is None:
        return AUDIO_STAGE_S
    started = job.transcribing_at or job.received_at or job.updated_at
    expected = expected_s + TRANSCRIBE_PER_AUDIO_S * (job.probed_duration_s or 0.0)
    remaining = expected - (now - started).total_seconds()
    if remaining > 0:
        return max(MIN_WAIT_S, min(MAX_WAIT_S, math.ceil(remaining)))
    return min(MAX_OVERDUE_WAIT_S, MIN_WAIT_S + math.floor(-remaining / 10))
