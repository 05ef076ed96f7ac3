"""Bounded bursts: every function has reserved concurrency and the work queue's event source
a maximum concurrency, sized from the account's Lambda concurrency and Transcribe's quotas
(infra.concurrency), so that a burst queues instead of taking the account."""

from __future__ import annotations

import math
from typing import Any

import pytest

from alertfusion.errors import ConfigError
from infra.concurrency import UNRESERVED_MINIMUM, plan_concurrency
from infra.config import load_config
from tests.infra.conftest import Synth
from tests.infra.templates import find_one

pytestmark = pytest.mark.infra

FUNCTIONS = {
    "starter": ("pipeline", "StarterFunction"),
    "classifier": ("pipeline", "ClassifierFunction"),
    "sweeper": ("pipeline", "SweeperFunction"),
    "backfill": ("pipeline", "BackfillFunction"),
    "api": ("api", "HttpFunction"),
}
S3 = {"bundle": "s3://my-models/alertfusion/v3"}


def _reserved(synth: Synth) -> dict[str, Any]:
    found = {}
    for name, (component, prefix) in FUNCTIONS.items():
        _, function = find_one(synth.templates[component], "AWS::Lambda::Function", prefix)
        found[name] = function["Properties"].get("ReservedConcurrentExecutions")
    return found


def test_every_function_has_its_reservation_from_the_plan(synth: Synth) -> None:
    plan = synth.config.concurrency
    assert plan == load_config(S3).concurrency  # the defaults
    assert _reserved(synth) == {
        "starter": plan.starter,
        "classifier": plan.classifier,
        "sweeper": 1,
        "backfill": plan.backfill,
        "api": plan.api,
    }
    # Lambda keeps 100 unreserved in the account; the defaults assume a quota of 1000
    assert sum(_reserved(synth).values()) <= 1000 - UNRESERVED_MINIMUM


def test_the_work_queue_never_takes_the_whole_classifier(synth: Synth) -> None:
    plan = synth.config.concurrency
    (mapping,) = synth.resources("pipeline", "AWS::Lambda::EventSourceMapping").values()
    scaling = mapping["Properties"]["ScalingConfig"]["MaximumConcurrency"]
    assert scaling == plan.work_queue
    assert 2 <= scaling < plan.classifier  # room for Transcribe's completion events


def test_the_defaults() -> None:
    """1000 concurrent executions, 80 % of the 900 reservable: 720; Transcribe's default
    quotas (250 jobs, 25 starts/s); the backfill map 12 wide (policy always)."""
    plan = load_config(S3).concurrency
    assert (plan.sweeper, plan.backfill, plan.starter) == (1, 13, 25)
    assert plan.classifier == 250  # Transcribe's concurrent-job quota
    assert plan.work_queue == 200
    assert plan.api == 720 - 1 - 13 - 25 - 250
    assert plan.reserved == 720


@pytest.mark.parametrize(
    ("account", "share", "jobs", "tps"),
    [(1000, 0.8, 250, 25), (3000, 0.5, 100, 10), (200, 1.0, 250, 5), (50_000, 1.0, 2000, 50)],
)
def test_the_plan_fits_the_budget_and_follows_the_quotas(
    account: int, share: float, jobs: int, tps: float
) -> None:
    plan = plan_concurrency(
        account_concurrency=account,
        concurrency_share=share,
        transcribe_concurrent_jobs_quota=jobs,
        transcribe_start_tps_quota=tps,
        backfill_map_width=12,
    )
    budget = math.floor((account - UNRESERVED_MINIMUM) * share)
    assert plan.reserved == budget
    assert plan.starter == max(2, math.ceil(tps))
    assert 2 <= plan.classifier <= jobs
    assert 2 <= plan.work_queue <= min(1000, plan.classifier)
    assert plan.api >= 2


def test_an_account_too_small_is_refused_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="account_concurrency=150"):
        load_config({**S3, "account_concurrency": 150})
    with pytest.raises(ConfigError, match="account_concurrency"):
        load_config({**S3, "account_concurrency": 100})


def test_provisioned_concurrency_must_fit_the_reservation() -> None:
    with pytest.raises(ConfigError, match="provisioned=100 is more than"):
        load_config({**S3, "account_concurrency": 300, "provisioned": 100})
