"""EmergencyDetected events: content and which stages are pending."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from alertfusion.jobs import Job, JobStatus, Stage, Verdict
from alertfusion.notify import (
    ALERT_DETAIL_TYPE,
    DETAIL_TYPE,
    EVENT_SOURCE,
    emergency_entry,
    pending_alerts,
)
from tests.pipeline_doubles import BUNDLE_VERSION, make_result

pytestmark = pytest.mark.unit

MOMENT = datetime(2026, 11, 21, 9, 14, 5, tzinfo=UTC)


def job(**fields: object) -> Job:
    base: dict[str, object] = {
        "job_id": "01JD7Q3K8W2S9V4M6T1R5Y0ZXB",
        "status": JobStatus.TRANSCRIBING,
        "created_at": MOMENT,
        "updated_at": MOMENT,
        "expires_at": 0,
        "object_key": "uploads/01JD7Q3K8W2S9V4M6T1R5Y0ZXB.wav",
        "uploaded_at": MOMENT,
        "client_transcript": "비밀 텍스트",
    }
    return Job.model_validate({**base, **fields})


def verdict(label: str) -> Verdict:
    return Verdict.from_result(make_result(label), decided_at=MOMENT)


def test_pending_alerts() -> None:
    assert pending_alerts(job()) == []
    assert pending_alerts(job(preliminary=verdict("regular"))) == []
    assert pending_alerts(job(preliminary=verdict("theft"))) == [Stage.PRELIMINARY]
    both = job(preliminary=verdict("theft"), final=verdict("violence"))
    assert pending_alerts(both) == [Stage.PRELIMINARY, Stage.FINAL]
    sent = job(
        preliminary=verdict("theft"), final=verdict("violence"), alert_preliminary_sent_at=MOMENT
    )
    assert pending_alerts(sent) == [Stage.FINAL]


def test_event_entry() -> None:
    j = job(final=verdict("violence"), final_latency_ms=812.5)
    entry = emergency_entry(j, Stage.FINAL, verdict("violence"), "bus")
    assert (entry["Source"], entry["DetailType"], entry["EventBusName"]) == (
        EVENT_SOURCE,
        DETAIL_TYPE,
        "bus",
    )
    detail = json.loads(entry["Detail"])
    assert detail["alert_id"] == "01JD7Q3K8W2S9V4M6T1R5Y0ZXB:final"
    assert detail["label"] == "violence" and detail["stage"] == "final"
    assert detail["object_key"] == j.object_key and detail["bundle_version"] == BUNDLE_VERSION
    assert detail["latency_ms"] == 812.5 and detail["decided_at"] == "2026-11-21T09:14:05.000Z"
    assert set(detail["probabilities"]) == {
        "regular",
        "help",
        "robbery",
        "sexual",
        "theft",
        "violence",
    }
    assert "비밀" not in entry["Detail"]  # never the transcript


def test_the_event_names_the_jobs_owner() -> None:
    mine = job(owner="user:3f2a9c1e-0b7d-4e58-9a61-2c4d8e0f1a2b", final=verdict("help"))
    detail = json.loads(emergency_entry(mine, Stage.FINAL, verdict("help"), "bus")["Detail"])
    assert detail["owner"] == "user:3f2a9c1e-0b7d-4e58-9a61-2c4d8e0f1a2b"
    dropped = job(final=verdict("help"))  # a recording dropped into the bucket: nobody's
    assert (
        json.loads(emergency_entry(dropped, Stage.FINAL, verdict("help"), "bus")["Detail"])["owner"]
        is None
    )


#: the keys of an EmergencyDetected event's detail (its shape, which consumers rely on)
EMERGENCY_KEYS = {
    "alert_id",
    "job_id",
    "owner",
    "stage",
    "label",
    "label_ko",
    "emergency_probability",
    "probabilities",
    "decided_by",
    "text_source",
    "object_key",
    "bundle_version",
    "trained",
    "decided_at",
    "uploaded_at",
    "latency_ms",
}


def test_emergency_voice_keeps_its_event_name_and_shape() -> None:
    for recipe in (None, "emergency-voice"):
        v = verdict("help").model_copy(update={"recipe": recipe})
        entry = emergency_entry(job(final=v), Stage.FINAL, v, "bus")
        assert entry["DetailType"] == DETAIL_TYPE == "EmergencyDetected"
        assert set(json.loads(entry["Detail"])) == EMERGENCY_KEYS


def test_another_recipe_sends_its_own_labels_as_alert_detected() -> None:
    v = Verdict.model_validate(
        {
            **verdict("help").model_dump(),
            "recipe": "infant-cry",
            "label": "hungry",
            "label_ko": "배고픔",
            "probabilities": {"hungry": 0.7, "not_hungry": 0.3},
        }
    )
    entry = emergency_entry(job(final=v), Stage.FINAL, v, "bus")
    assert entry["DetailType"] == ALERT_DETAIL_TYPE == "AlertDetected"
    detail = json.loads(entry["Detail"])
    assert set(detail) == EMERGENCY_KEYS - {"label_ko"} | {"label_display", "recipe"}
    assert (detail["recipe"], detail["label"], detail["label_display"]) == (
        "infant-cry",
        "hungry",
        "배고픔",
    )
    assert set(detail["probabilities"]) == {"hungry", "not_hungry"}
