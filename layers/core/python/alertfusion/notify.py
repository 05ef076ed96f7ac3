"""EmergencyDetected events on EventBridge: one per job and stage, deduplicated through the
job record.

The emergency-voice system's event keeps its name and shape. A bundle of another recipe
(alertfusion.recipe: an infant's cry, a dog's bark...) sends ``AlertDetected`` instead, when
an alert label of its recipe won: the same keys, with `label_display` (the label's display
name, from the manifest) for `label_ko` and the `recipe` named, so a consumer subscribed to
emergencies never receives a hungry infant as one.

Order: **send, then mark** (``alert_{stage}_sent_at`` on the job, a conditional write). An
emergency alert is never lost: every stage function calls :func:`publish_pending_alerts`
on entry and after writing a verdict, so a retry after any crash re-sends what is not
marked. The price is at-least-once delivery; a duplicate (same ``alert_id``, same detail)
is possible exactly when

1. the process dies (crash, timeout) after ``PutEvents`` succeeded and before the mark is
   written, or the table refuses the mark for longer than its retries (`MARK_ATTEMPTS`,
   a few seconds: throttling and 5xx are retried here, since the alert is out already);
   the retry sends again;
2. ``PutEvents`` accepted the event but its answer was lost (timeout): botocore or the
   retry sends again;
3. two invocations for the same job run concurrently (a duplicated task or event delivered
   in parallel) and both read the job before either marked it.

Consumers dedupe on ``detail.alert_id`` (``{job_id}:{stage}``).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from alertfusion.errors import TransientError
from alertfusion.jobs import Job, JobStore, Stage, Verdict, now_utc, utc_iso

EVENT_SOURCE = "alertfusion"
DETAIL_TYPE = "EmergencyDetected"
#: the event of a verdict of any other recipe whose alert label won
ALERT_DETAIL_TYPE = "AlertDetected"
#: recipes whose verdicts are EmergencyDetected (None: a verdict recorded before recipes)
EMERGENCY_RECIPES = frozenset({None, "emergency-voice"})
#: writes of an alert's mark before the error is raised (the alert is out: a failed mark
#: means a duplicate on the retry), with full-jitter backoff from `MARK_BASE_DELAY_S`
MARK_ATTEMPTS = 5
MARK_BASE_DELAY_S = 0.1


def alert_id(job_id: str, stage: Stage) -> str:
    return f"{job_id}:{stage.value}"


def emergency_detail(job: Job, stage: Stage, verdict: Verdict) -> dict[str, Any]:
    """The event detail: what a backend needs to push an alert to the right person (never
    audio or text). `owner` is who made the job (``user:<token subject>``,
    ``apikey:<key digest>``; None for recordings dropped into the bucket)."""
    latency = job.preliminary_latency_ms if stage is Stage.PRELIMINARY else job.final_latency_ms
    emergency = verdict.recipe in EMERGENCY_RECIPES
    return {
        "alert_id": alert_id(job.job_id, stage),
        "job_id": job.job_id,
        "owner": job.owner,
        "stage": stage.value,
        **({} if emergency else {"recipe": verdict.recipe}),
        "label": verdict.label,
        ("label_ko" if emergency else "label_display"): verdict.label_ko,
        "emergency_probability": verdict.emergency_probability,
        "probabilities": verdict.probabilities,
        "decided_by": verdict.decided_by,
        "text_source": verdict.text_source,
        "object_key": job.object_key,
        "bundle_version": verdict.bundle_version,
        "trained": verdict.trained,
        "decided_at": utc_iso(verdict.decided_at),
        "uploaded_at": utc_iso(job.uploaded_at) if job.uploaded_at else None,
        "latency_ms": latency,
    }


def emergency_entry(job: Job, stage: Stage, verdict: Verdict, bus_name: str) -> dict[str, Any]:
    return {
        "Source": EVENT_SOURCE,
        "DetailType": DETAIL_TYPE if verdict.recipe in EMERGENCY_RECIPES else ALERT_DETAIL_TYPE,
        "Detail": json.dumps(emergency_detail(job, stage, verdict), ensure_ascii=False),
        "EventBusName": bus_name,
    }


def send_emergency(events_client: Any, entry: dict[str, Any]) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = events_client.put_events(Entries=[entry])
    except (ClientError, BotoCoreError) as exc:
        raise TransientError(f"PutEvents failed: {type(exc).__name__}") from exc
    if response.get("FailedEntryCount"):
        failed = response.get("Entries", [{}])[0]
        raise TransientError(
            f"PutEvents rejected the alert: {failed.get('ErrorCode')} {failed.get('ErrorMessage')}"
        )


def pending_alerts(job: Job) -> list[Stage]:
    """Stages whose verdict is an emergency and whose alert is not marked sent."""
    out = []
    for stage in Stage:
        verdict = job.verdict(stage)
        if verdict is not None and verdict.is_emergency and job.alert_sent_at(stage) is None:
            out.append(stage)
    return out


def publish_pending_alerts(
    store: JobStore,
    job: Job,
    *,
    events_client: Any,
    bus_name: str,
    now: datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Stage]:
    """Send, then mark, every pending alert of `job`; returns the stages sent."""
    sent = []
    for stage in pending_alerts(job):
        verdict = job.verdict(stage)
        assert verdict is not None
        send_emergency(events_client, emergency_entry(job, stage, verdict, bus_name))
        _mark_sent(store, job.job_id, stage, now or now_utc(), sleep)
        sent.append(stage)
    return sent


def _mark_sent(
    store: JobStore, job_id: str, stage: Stage, now: datetime, sleep: Callable[[float], None]
) -> None:
    """The mark, retried on transient trouble: the event is on the bus already, so failing
    the invocation here would send it again."""
    for attempt in range(MARK_ATTEMPTS):
        try:
            store.mark_alert_sent(job_id, stage, now=now)
            return
        except TransientError:
            if attempt + 1 == MARK_ATTEMPTS:
                raise
            sleep(random.random() * MARK_BASE_DELAY_S * (2**attempt))
