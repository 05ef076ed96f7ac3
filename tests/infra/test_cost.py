"""The cost model: the arithmetic that matters (Transcribe's minimum, the gated policy, the
fallback) and its agreement with what the stacks define."""

from __future__ import annotations

import dataclasses
import json

import pytest

from infra.cost import PRICES, Load, main, monthly_cost
from tests.infra.conftest import Synth

pytestmark = pytest.mark.infra


def test_transcribe_bills_at_least_15_seconds_per_job() -> None:
    five = monthly_cost(Load(mean_audio_seconds=5))["Transcribe"]
    fifteen = monthly_cost(Load(mean_audio_seconds=15))["Transcribe"]
    thirty = monthly_cost(Load(mean_audio_seconds=30))["Transcribe"]
    assert five == fifteen
    assert thirty == pytest.approx(2 * fifteen, abs=0.01)
    assert fifteen == pytest.approx(100_000 * 0.25 * PRICES["transcribe_minute"][0], abs=0.01)


def test_gated_policy_transcribes_only_the_alerts() -> None:
    always = monthly_cost(Load())["Transcribe"]
    gated = monthly_cost(Load(transcribe_policy="gated", emergency_share=0.05))["Transcribe"]
    assert gated == pytest.approx(always * 0.05, abs=0.01)


def test_lambda_cost_follows_the_measured_duration() -> None:
    base = Load(starter_ms=0, api_predict_ms=0, api_light_ms=0, sweeper_ms=0)
    one = monthly_cost(dataclasses.replace(base, classifier_audio_ms=500))["Lambda"]
    two = monthly_cost(dataclasses.replace(base, classifier_audio_ms=1000))["Lambda"]
    gb_seconds = 100_000 * 0.5 * 3008 / 1024
    assert two - one == pytest.approx(gb_seconds * PRICES["lambda_gb_second_x86"][0], abs=0.02)


def test_fallback_adds_the_instance_only_when_deployed() -> None:
    assert "EC2 fallback" not in monthly_cost(Load())
    ec2 = monthly_cost(Load(fallback=True))["EC2 fallback"]
    assert ec2 > 730 * PRICES["ec2_t2_medium_hour"][0]


def test_alarm_count_matches_the_stacks(synth: Synth) -> None:
    alarms = sum(
        len(synth.resources(component, "AWS::CloudWatch::Alarm"))
        for component in ("pipeline", "api")
    )
    assert Load().alarms == alarms


def test_every_price_names_its_unit_and_source() -> None:
    for name, (value, unit, source) in PRICES.items():
        assert value > 0 and unit and source, name


def test_cli_prints_json_for_any_load(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--recordings", "1000", "--classifier-audio-ms", "321", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["load"]["recordings"] == 1000
    assert out["load"]["classifier_audio_ms"] == 321.0
    assert out["total"] == pytest.approx(sum(out["usd_per_month"].values()), abs=0.02)


def test_the_backfill_estimate_assumes_the_cost_models_placeholder_durations() -> None:
    from alertfusion.backfill import summary

    load = Load()
    assert summary.CLASSIFIER_AUDIO_MS == load.classifier_audio_ms
    assert summary.CLASSIFIER_FINAL_MS == load.classifier_final_ms
    assert summary.CLASSIFIER_MEMORY_MB == load.classifier_memory_mb
