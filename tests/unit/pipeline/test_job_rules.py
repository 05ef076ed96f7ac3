"""Job states, stored verdicts and the DynamoDB value mapping (no AWS)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, DecimalException
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alertfusion.dynamodb import from_attribute, to_attribute
from alertfusion.errors import ReasonCode
from alertfusion.jobs import (
    FINAL_STATUSES,
    Job,
    JobStatus,
    Verdict,
    can_transition,
    sources_of,
    utc_iso,
)
from alertfusion.jobs.store import _Update
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
    stored = to_attribute(job.model_dump(mode="json", exclude_none=True))
    assert stored["M"]["probed_duration_s"] == {"N": "5.26"}
    assert "N" in stored["M"]["preliminary"]["M"]["probabilities"]["M"]["help"]
    assert Job.model_validate(from_attribute(stored)) == job
    for bad in (float("nan"), float("inf"), 10**40):
        with pytest.raises(ValueError):
            to_attribute({"p": bad})
    with pytest.raises(TypeError):
        to_attribute({"p": b"bytes"})
    with pytest.raises(TypeError):
        from_attribute({"SS": ["a", "b"]})


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.text(max_size=8)
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(min_size=1, max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


@given(_json_values)
def test_attribute_values_match_boto3s_serializer(value: Any) -> None:
    """The job store's own AttributeValue codec writes what boto3's TypeSerializer writes (on
    the floats-as-Decimal(repr) values the store used to give it) and reads it back."""
    from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

    def as_boto3_input(v: Any) -> Any:
        if isinstance(v, float):
            return Decimal(repr(v))
        if isinstance(v, dict):
            return {k: as_boto3_input(x) for k, x in v.items() if x is not None}
        if isinstance(v, list):
            return [as_boto3_input(x) for x in v]
        return v

    try:
        reference = TypeSerializer().serialize(as_boto3_input(value))
    except DecimalException:  # out of DynamoDB's range or precision
        with pytest.raises(ValueError):
            to_attribute(value)
        return
    ours = to_attribute(value)
    assert ours == reference

    def as_plain(v: Any) -> Any:
        if isinstance(v, Decimal):
            return int(v) if v == v.to_integral_value() else float(v)
        if isinstance(v, dict):
            return {k: as_plain(x) for k, x in v.items()}
        if isinstance(v, list):
            return [as_plain(x) for x in v]
        return v

    assert from_attribute(ours) == as_plain(TypeDeserializer().deserialize(ours))


def test_update_builder_refuses_setting_one_attribute_twice() -> None:
    up = _Update()
    up.set("status", "RECEIVED")
    up.set("ignored", None)
    with pytest.raises(ValueError):
        up.set("status", "DONE")
    up.add("sweep_count", 1)
    assert up.expression() == "SET #status = :v0 ADD #sweep_count :v1"
