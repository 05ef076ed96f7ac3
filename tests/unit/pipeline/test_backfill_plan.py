"""The backfill's sizing from Transcribe's quotas and the policy, the first window's pacing,
the definition's placeholders, the cost arithmetic."""

from __future__ import annotations

import json

import pytest

from alertfusion.backfill.definition import SUBSTITUTIONS, definition_text, substitute
from alertfusion.backfill.plan import BackfillSettings, plan_for, start_delay_seconds
from alertfusion.backfill.summary import ItemResult, backfill_cost, summarize_items
from alertfusion.keys import derive_job_id, job_id_for_listed_object, new_job_id
from alertfusion.pricing import price

pytestmark = pytest.mark.unit


def settings(**values: object) -> BackfillSettings:
    return BackfillSettings.model_validate(values)


def test_concurrency_keeps_transcribe_jobs_within_the_quota_share() -> None:
    plan = plan_for("always", settings(TRANSCRIBE_CONCURRENT_JOBS_QUOTA=100))
    assert plan.max_concurrency * plan.batch_size <= 50  # half of 100, every object transcribed
    assert plan.max_concurrency == 5
    wide = plan_for(
        "always", settings(TRANSCRIBE_CONCURRENT_JOBS_QUOTA=1000, BACKFILL_QUOTA_SHARE=1)
    )
    assert wide.max_concurrency == 100


def test_gated_sizes_by_the_expected_alert_share() -> None:
    s = settings(TRANSCRIBE_CONCURRENT_JOBS_QUOTA=100, BACKFILL_GATED_ALERT_SHARE=0.25)
    gated = plan_for("gated", s)
    assert gated.max_concurrency == 20  # 50 jobs / 0.25 = 200 objects = 20 batches
    assert gated.transcribe_jobs_in_flight == 50
    assert gated.start_rate_per_second == pytest.approx(
        4 * plan_for("always", s).start_rate_per_second
    )


def test_the_first_window_is_spread_at_the_start_rate_then_completions_pace_it() -> None:
    plan = plan_for("always", settings(TRANSCRIBE_START_TPS_QUOTA=10))  # 5 starts/s for us
    assert plan.start_rate_per_second == 5
    delays = [start_delay_seconds(i, plan.start_rate_per_second, plan.window) for i in range(200)]
    assert delays[:10] == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    assert max(delays) == (plan.window - 1) // 5
    assert all(d == 0 for d in delays[plan.window :])


def test_a_bundle_that_transcribes_itself_gets_the_width_it_was_given_unpaced() -> None:
    plan = plan_for("always", settings(BACKFILL_MAP_WIDTH=28, TRANSCRIBE_START_TPS_QUOTA=10))
    assert (plan.max_concurrency, plan.transcribe_jobs_in_flight) == (28, 0)
    assert plan.start_rate_per_second == 0
    assert {
        start_delay_seconds(i, plan.start_rate_per_second, plan.window) for i in range(300)
    } == {0}
    assert plan_for("gated", settings(BACKFILL_MAP_WIDTH=28)) == plan
    with pytest.raises(ValueError):
        settings(BACKFILL_MAP_WIDTH=0)


def test_every_placeholder_is_filled_and_none_is_left() -> None:
    text = definition_text(plan_for("always"))
    for name in SUBSTITUTIONS:
        assert "${" + name + "}" in text
    filled = substitute(text, {name: f"value-of-{name}" for name in SUBSTITUTIONS})
    assert "${" not in filled
    json.loads(filled)
    with pytest.raises(ValueError, match="no value"):
        substitute(text, {})


def test_listed_objects_get_the_starters_ids() -> None:
    named = new_job_id()
    assert job_id_for_listed_object(f"uploads/{named}.wav", '"abc"') == named
    key = "archive/2024/녹음 1.wav"
    assert job_id_for_listed_object(key, '"abc"') == derive_job_id(
        key, version_id=None, etag="abc", sequencer=None
    )
    assert job_id_for_listed_object(key, '"abd"') != job_id_for_listed_object(key, '"abc"')


def test_transcribe_cost_bills_at_least_15_seconds_a_job() -> None:
    short = backfill_cost(
        objects=1, new_jobs=1, transcribed_seconds=[5.0], reclassified=0, batches=1, checks=1
    )
    long = backfill_cost(
        objects=1, new_jobs=1, transcribed_seconds=[60.0], reclassified=0, batches=1, checks=1
    )
    assert short.by_service["Transcribe"] == pytest.approx(0.25 * price("transcribe_minute"))
    assert long.by_service["Transcribe"] == pytest.approx(price("transcribe_minute"))


def test_the_agreement_table_counts_old_against_new_labels() -> None:
    def item(i: int, old: str, new: str) -> ItemResult:
        return ItemResult(
            key=f"k{i}", index=i, action="reclassify", state="DONE", label=new,
            bundle_version="v2", baseline_label=old, baseline_version="v1",
        )  # fmt: skip

    items = [item(0, "help", "help"), item(1, "help", "regular"), item(2, "regular", "regular")]
    summary = summarize_items(items, batches=1, checks=1, bundle_version="v2")
    comparison = summary.comparison
    assert comparison is not None
    assert (comparison.compared, comparison.agreed) == (3, 2)
    assert comparison.table == {"help": {"help": 1, "regular": 1}, "regular": {"regular": 1}}
    assert summary.new_jobs == 0 and summary.cost.by_service["Transcribe"] == 0
