"""Every passing scenario, on both backends, through `scenario run --all`."""

from __future__ import annotations

import pytest

from app import failpoints
from app.publishers import webhook
from app.scenarios.catalog import LAB_FAILPOINTS, catalog
from tests.helpers import Backend
from tests.scenarios.conftest import run_scenario

SMALL = "200"
CHAOS_KILLS = 20


def test_the_catalog_covers_every_failpoint_with_crash_and_raise() -> None:
    assert webhook.WebhookPublisher  # importing it declares effect.after_send
    faults = [f.failpoints for s in catalog().values() if not s.broken for f in s.faults]
    for name in failpoints.CATALOG:
        assert any(spec.startswith(f"{name}=crash") for spec in faults), name
    for name in LAB_FAILPOINTS:
        assert any(spec.startswith(f"{name}=raise") for spec in faults), name
    assert set(LAB_FAILPOINTS) <= set(failpoints.CATALOG)


def test_every_scenario_passes(scenario_backend: Backend) -> None:
    code, reports = run_scenario(scenario_backend, "--all", "--messages", SMALL, "--seed", "7")
    failures = {r["scenario"]: r["violations"] for r in reports if not r["ok"]}
    assert (code, failures) == (0, {})
    assert [r["scenario"] for r in reports] == [n for n, s in catalog().items() if not s.broken]
    scenarios = catalog()
    for report in reports:
        assert report["messages"] == int(SMALL)
        assert report["steps_reexecuted"] == [] and report["stranded"] == []
        fired = [f for run in report["fault_runs"] for f in run["fired"]]
        faults = scenarios[report["scenario"]].faults
        if faults:  # chaos kills from outside, at seeded moments
            name = faults[-1].failpoints.split("=")[0]
            assert any(f["failpoint"] == name for f in fired), report["scenario"]
    (chaos,) = (r for r in reports if r["scenario"] == "chaos")
    kills = [run for run in chaos["fault_runs"] if run["ended"].startswith("SIGKILL by the lab")]
    assert len(kills) == CHAOS_KILLS
    assert chaos["ledger_rows"] == int(SMALL) and chaos["batches"] == 6


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (  # counters exact; no step runs again after it committed
            "broken/counter-outside-tx",
            ["local counter orders/default = 420, ledger has 400", "1 steps committed more than"],
        ),
        ("broken/in-memory-buffer", ["batch orders-default: 80 of 400 messages missing"]),  # lost
        ("broken/no-idempotency-key", ["side effects applied 4"]),  # duplicated (420 or 440)
        ("broken/version-change", ["workflows left PENDING or ENQUEUED"]),  # stranded
    ],
)
def test_each_check_catches_its_broken_variant(
    scenario_backend: Backend, name: str, expected: list[str]
) -> None:
    code, (report,) = run_scenario(scenario_backend, name)
    assert (code, report["ok"]) == (1, False)
    if name == "broken/version-change":
        assert report["stranded"], "the old version's work is never recovered"
    for text in expected:
        assert any(text in v for v in report["violations"]), report["violations"]
