"""Job states, stored verdicts and the DynamoDB value mapping (no AWS)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from alertfusion.errors import ReasonCode
from alertfusion.jobs import (
    FINAL_STATUSES,
    Job,
    JobStatus,
    Verdict,
    _from_dynamo,
    _to_dynamo,
    _Update,
    can_transition,
    sources_of,
    utc_iso,
)
from tests.pipeline_doubles import make_result

pytestmark = pytest.mark.unit

S = JobStatus
FORWARD = [
    (None, S.UPLOAD_PENDING),
    (None, S.RECEIVED),
    (None, S.FAILED),
    (S.UPLOAD_PENDING, S.RECEIVED),
    (S.UPLOAD_PENDING, S.FAILED),
    (S.RECEIVED, S.TRANSCRIBING),
    (S.RECEIVED, S.DONE),
    (S.RECEIVED, S.FAILED),
    (S.TRANSCRIBING, S.DONE),
    (S.TRANSCRIBING, S.FAILED),
]


@pytest.mark.parametrize("current", [None, *JobStatus])
@pytest.mark.parametrize("target", list(JobStatus))
def test_transitions_only_move_forward(current: JobStatus | None, target: JobStatus) -> None:
    assert can_transition(current, target) == ((current, target) in FORWARD)


def test_final_states_are_final() -> None:
    for final in FINAL_STATUSES:
        assert not any(can_transition(final, target) for target in JobStatus)
    assert sources_of(S.DONE) == [S.RECEIVED, S.TRANSCRIBING]
    assert sources_of(S.RECEIVED) == [S.UPLOAD_PENDING]


def test_utc_iso_is_fixed_width_and_orders_like_time() -> None:
    seoul = timezone(timedelta(hours=9))
    moments = [
        datetime(2026, 11, 21, 9, 14, 3, 512_000, tzinfo=UTC),
        datetime(2026, 11, 21, 18, 14, 4, tzinfo=seoul),
        datetime(2026, 11, 21, 9, 14, 4, 1_000, tzinfo=UTC),
    ]
    texts = [utc_iso(m) for m in moments]
    assert texts[0] == "2026-11-21T09:14:03.512Z"
    assert texts[1] == "2026-11-21T09:14:04.000Z"
    assert len({len(t) for t in texts}) == 1
    assert sorted(texts) == [utc_iso(m) for m in sorted(moments)]


def test_verdict_from_result() -> None:
    moment = datetime(2026, 11, 21, tzinfo=UTC)
    fused = Verdict.from_result(
        make_result("robbery", text="내 가방 내놔"), decided_at=moment, text_source="transcribe"
    )
    assert (fused.label, fused.label_ko, fused.is_emergency) == ("robbery", "강도범죄", True)
    assert fused.text_source == "transcribe" and fused.decided_by == "fusion"
    assert fused.probabilities is not None and sum(fused.probabilities.values()) == pytest.approx(1)
    audio_only = Verdict.from_result(
        make_result("regular"),
        decided_at=moment,
        text_source="transcribe",  # no text was used: not recorded as such
        audio_only_reason=ReasonCode.TRANSCRIPT_EMPTY,
    )
    assert audio_only.text_source is None and not audio_only.is_emergency
    assert audio_only.model_dump(mode="json")["decided_at"] == "2026-11-21T00:00:00.000Z"


def test_dynamo_values_round_trip_a_job() -> None:
    moment = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
    verdict = Verdict.from_result(make_result("help"), decided_at=moment)
    job = Job(
        job_id="01JD7Q3K8W2S9V4M6T1R5Y0ZXB",
        status=S.TRANSCRIBING,
        created_at=moment,
        updated_at=moment,
        expires_at=1_800_000_000,
        preliminary=verdict,
        probed_duration_s=5.26,
    )
    stored = _to_dynamo(job.model_dump(mode="json", exclude_none=True))
    assert isinstance(stored["probed_duration_s"], Decimal)
    assert isinstance(stored["preliminary"]["probabilities"]["help"], Decimal)
    assert Job.model_validate(_from_dynamo(stored)) == job
    with pytest.raises(ValueError):
        _to_dynamo({"p": float("nan")})


def test_update_builder_refuses_setting_one_attribute_twice() -> None:
    up = _Update()
    up.set("status", "RECEIVED")
    up.set("ignored", None)
    with pytest.raises(ValueError):
        up.set("status", "DONE")
    up.add("sweep_count", 1)
    assert up.expression() == "SET #status = :v0 ADD #sweep_count :v1"
