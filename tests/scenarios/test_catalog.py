"""Every passing scenario on each backend it runs on, one test each (so parallel workers share
them out), and every broken variant caught; what `scenario run --all` chooses, checked in this
process."""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest

from dbos_publishers import _failpoints as failpoints
from lab.scenarios import runner as scenario_runner
from lab.scenarios.catalog import LAB_FAILPOINTS, Scenario, catalog
from lab.scenarios.lab import RunOptions
from lab.scenarios.progress import Progress
from lab.scenarios.report import ScenarioReport
from tests.helpers import Backend, InProcessCli
from tests.scenarios.conftest import TEST_TIMEOUT_SEC, run_scenario

SMALL = "200"
SEED = "7"
CHAOS_KILLS = 20
# stuck.py's violation when a stuck worker's chunk transaction outlives its lease
OUTLIVED = "outlived its lease: still open 5 s after the fault's start"
BACKENDS: list[Backend] = ["sqlite", "postgres"]
OWN_TESTS = {"fleet/chaos"}  # run by a test of their own (test_fleet_chaos.py)


def passing(backend: Backend) -> list[str]:
    """What `scenario run --all` runs on a backend: multi-worker scenarios need Postgres."""
    return [
        name
        for name, scenario in catalog().items()
        if not scenario.broken and not (scenario.postgres_only and backend == "sqlite")
    ]


def on_backends(*cases: tuple[Any, ...]) -> list[pytest.ParameterSet]:
    """(backend, *case) for every backend a case's scenario (its first item) runs on."""
    return [
        pytest.param(
            backend,
            *case,
            marks=[pytest.mark.postgres] if backend == "postgres" else [],
            id=f"{backend}-{case[0]}",
        )
        for backend in BACKENDS
        for case in cases
        if not (catalog()[case[0]].postgres_only and backend == "sqlite")
    ]


def test_the_catalog_covers_every_failpoint_with_crash_and_raise() -> None:
    importlib.import_module("dbos_publishers.contrib.webhook")  # declares effect.after_send
    assert "effect.after_send" in failpoints.CATALOG
    faults = [f.failpoints for s in catalog().values() if not s.broken for f in s.faults]
    for name in failpoints.CATALOG:
        assert any(spec.startswith(f"{name}=crash") for spec in faults), name
    for name in LAB_FAILPOINTS:
        assert any(spec.startswith(f"{name}=raise") for spec in faults), name
    assert set(LAB_FAILPOINTS) <= set(failpoints.CATALOG)


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_runs_every_passing_scenario_in_catalog_order(
    cli: InProcessCli, monkeypatch: pytest.MonkeyPatch, backend: Backend
) -> None:
    """`scenario run --all` runs what the tests below run one at a time, with the same options."""
    ran: list[tuple[str, RunOptions]] = []

    def run(scenario: Scenario, options: RunOptions, _progress: Progress) -> ScenarioReport:
        ran.append((scenario.name, options))
        return ScenarioReport(scenario.name, scenario.summary, options.backend, options.seed, 1, 1)

    monkeypatch.setattr(scenario_runner, "run", run)
    args = ("--all", "--backend", backend, "--messages", SMALL, "--seed", SEED, "--json")
    done = cli("scenario", "run", *args)
    assert done.returncode == 0, done.stderr
    assert [name for name, _ in ran] == passing(backend)
    options = {(o.backend, o.messages, o.seed, o.kills) for _, o in ran}
    assert options == {(backend, int(SMALL), int(SEED), None)}
    assert [r["scenario"] for r in json.loads(done.stdout)] == passing(backend)


@pytest.mark.slow
@pytest.mark.timeout(TEST_TIMEOUT_SEC)
@pytest.mark.parametrize(
    ("backend", "name"),
    on_backends(*((n,) for n in passing("postgres") if n not in OWN_TESTS)),
)
def test_scenario_passes(scenario_backend: Backend, name: str) -> None:
    scenario = catalog()[name]
    # Takeover needs work in flight on the worker that goes: those run at their own size (at 200
    # messages takeover/chaos reports "nobody took over the work of executor ...").
    # pg/* too: a Postgres fault must land while the batch is still running.
    # fleet/* too: the batches must outlast every stuck worker and its check window.
    at_own_size = scenario.takeover or scenario.infra or scenario.stuck
    messages = str(scenario.messages) if at_own_size else SMALL
    code, (report,) = run_scenario(scenario_backend, name, "--messages", messages, "--seed", SEED)
    assert (code, report["ok"], report["violations"]) == (0, True, []), report["fault_runs"]
    assert report["scenario"] == name
    assert report["messages"] == int(messages)
    assert report["steps_reexecuted"] == [] and report["stranded"] == []
    faults = scenario.faults
    if faults:  # chaos kills from outside, at seeded moments
        fired = [f for run in report["fault_runs"] for f in run["fired"]]
        failpoint = faults[-1].failpoints.split("=")[0]
        assert any(f["failpoint"] == failpoint for f in fired), fired
    if name == "chaos":
        _assert_chaos(report)
    if scenario.infra:
        _assert_infra(report)
    if scenario.stuck:
        _assert_stuck(report)


def _assert_stuck(report: dict[str, Any]) -> None:
    """Each fault landed where it was aimed (inside a chunk transaction or a dequeue), the
    other workers committed within the limit, Postgres ended the stuck worker's chunk
    transactions within theirs (a fault in a chunk watched at least one), and the dequeue freeze
    left the late PENDING work the audit found stranded, which a survivor recovered."""
    faults = report["stuck_faults"]
    assert len(faults) == (2 if report["scenario"] == "fleet/freeze" else 1), faults
    for fault in faults:
        assert fault["inside"], fault
        assert fault["survivors_resumed_sec"] <= fault["limit_sec"], fault
        if fault["stuck_sessions"]:
            assert fault["session_ended_sec"] <= fault["session_limit_sec"], fault
    assert faults[0]["stuck_sessions"] >= 1, faults[0]  # the first fault is in a chunk
    if report["scenario"] == "fleet/freeze":
        assert faults[1]["late_recovered"] >= 1, faults[1]


def _assert_infra(report: dict[str, Any]) -> None:
    """Each Postgres fault landed mid-batch, and the service was never restarted but where it
    exited with a reason (a supervisor's restart, reported)."""
    landed = [f for f in report["infra_faults"] if "at_rows" in f]
    assert landed, report["infra_faults"]
    assert all(f["at_rows"] < report["messages"] for f in landed), landed
    assert all(": " in why and "exit 0" not in why for why in report["supervisor_restarts"])
    if report["scenario"] == "pg/outage":
        assert report["outage_log"]["database_unreachable"] == 1, report["outage_log"]


def _assert_chaos(report: dict[str, Any]) -> None:
    kills = [run for run in report["fault_runs"] if run["ended"].startswith("SIGKILL by the lab")]
    assert len(kills) == CHAOS_KILLS
    assert report["ledger_rows"] == int(SMALL) and report["batches"] == 6


@pytest.mark.slow
@pytest.mark.timeout(TEST_TIMEOUT_SEC)
@pytest.mark.parametrize(
    ("backend", "name", "expected"),
    on_backends(
        (  # counters exact; no step runs again after it committed
            "broken/counter-outside-tx",
            ["local counter orders/default = 420, ledger has 400", "1 steps committed more than"],
        ),
        ("broken/in-memory-buffer", ["of 400 messages missing"]),  # lost
        ("broken/no-idempotency-key", ["side effects applied 4"]),  # duplicated (420 or 440)
        ("broken/version-change", ["workflows left PENDING or ENQUEUED"]),  # stranded
        (  # a patch that moves a committed transaction to another step id runs it again
            "broken/patch-before-commit",
            ["batch orders-default: its summary reports 20 of 200 messages failed"],
        ),
        # a changed fan-in without its patch fails the replay of a batch started before it
        ("broken/fan-in-without-patch", ["batch orders-default ended ERROR"]),
        # a window enqueue without its patch fails the replay of a batch started before it
        ("broken/fan-out-without-patch", ["batch orders-default ended ERROR"]),
        # a batch planned before plans named their fan-out replays only through its markers
        ("broken/plan-fan-out-without-patch", ["batch orders-default ended ERROR"]),
        ("broken/takeover-without-claim", ["was taken over"]),  # a gone worker claimed twice
        ("broken/outage-flood", ["the outage flooded the log"]),  # an outage told once
        # issue 20: a taken-over executor re-checked for 3 TTLs only strands a thawed dequeue
        ("broken/freeze-recheck-window", ["workflows left PENDING or ENQUEUED"]),
        # no transaction bound: a stuck worker's chunk transaction outlives its lease
        ("broken/freeze-unbounded", ["freeze (SIGSTOP) in a chunk transaction: a chunk", OUTLIVED]),
        ("broken/hang-unbounded", ["hang before a chunk commit: a chunk", OUTLIVED]),
        ("broken/partition-unbounded", ["(veth down) in a chunk transaction: a chunk", OUTLIVED]),
        (  # a cancel that only tells DBOS: the queued chunks publish on
            "broken/cancel-without-guard",
            ["messages published after the cancel"],
        ),
    ),
)
def test_each_check_catches_its_broken_variant(
    scenario_backend: Backend, name: str, expected: list[str]
) -> None:
    code, (report,) = run_scenario(scenario_backend, name)  # at the scenario's own size
    assert (code, report["ok"]) == (1, False)
    if name == "broken/version-change":
        assert report["stranded"], "the old version's work is never recovered"
    for text in expected:
        assert any(text in v for v in report["violations"]), report["violations"]
