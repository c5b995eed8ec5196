"""A real SIGKILL in the middle of a batch, then a plain restart: the batch finishes exactly."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from dbos_publishers._ids import batch_workflow_id
from dbos_publishers.store._database import short_lived_engine
from dbos_publishers.store._schema import ledger
from tests.helpers import ServiceRunner

CRASH_POINTS = [
    "fanout.after_enqueue",
    "chunk.before_commit",
    "chunk.after_commit",
    "fanin.after_result",
]
TOTAL = 400
CHUNK = 20

pytestmark = pytest.mark.slow  # real services, real SIGKILLs


def _ledger_rows(service: ServiceRunner) -> dict[str, object]:
    with short_lived_engine(service.settings().app_db) as engine, engine.connect() as conn:
        rows = conn.execute(sa.select(ledger.c.message_id, ledger.c.published_at))
        return {message_id: published_at for message_id, published_at in rows}


def _batch_status(service: ServiceRunner, batch_id: str) -> str:
    (found,) = service.workflow_statuses([batch_workflow_id(batch_id)])
    return found.status


@dataclass
class AtCrash:
    steps: dict[tuple[str, int], dict[str, object]]
    rows: dict[str, object]
    statuses: dict[str, str]


def crash_then_restart(service: ServiceRunner, failpoints: str, batch_id: str) -> AtCrash:
    """Start with a crashing failpoint, publish TOTAL messages, snapshot, restart without it."""
    service.start(failpoints=failpoints)
    service.publish("orders", TOTAL, batch_id)
    assert service.wait_exit() == -signal.SIGKILL, service.tail()
    at_crash = AtCrash(
        steps=service.steps(batch_id),
        rows=_ledger_rows(service),
        statuses={wf.workflow_id: wf.status for wf in service.workflows(batch_id)},
    )
    assert _batch_status(service, batch_id) == "PENDING", "the crash must land mid-batch"
    if not failpoints.startswith("fanin."):  # the fan-in may start after the last chunk commits
        assert len(at_crash.rows) < TOTAL, "the crash must land before the last chunk commits"
    service.start()
    return at_crash


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_sigkill_mid_batch_resumes_exactly_where_it_stopped(
    service: ServiceRunner, point: str
) -> None:
    service.declare(chunk_size=CHUNK, chunk_concurrency=2)
    at_crash = crash_then_restart(service, f"{point}=crash@5", "crash")

    summary = service.wait_batch("crash")
    assert (summary["published"], summary["failed"]) == (TOTAL, 0)
    report = service.check({"crash": TOTAL})
    assert report.ok, report.violations
    assert report.ledger_rows == TOTAL

    rows_after = _ledger_rows(service)
    # Rows committed before the crash were neither rewritten nor duplicated by the restart.
    assert {k: rows_after[k] for k in at_crash.rows} == at_crash.rows
    steps_after = service.steps("crash")
    completed = {k: s for k, s in at_crash.steps.items() if s["completed_at_epoch_ms"] is not None}
    for key, step in completed.items():
        after = steps_after[key]
        assert (after["function_name"], after["completed_at_epoch_ms"]) == (
            step["function_name"],
            step["completed_at_epoch_ms"],
        ), f"step {key} ran again after the restart"
    assert service.active_workflows() == []
    _inspect_marks_exactly_the_replayed_steps(service, at_crash, completed)


def _inspect_marks_exactly_the_replayed_steps(
    service: ServiceRunner, at_crash: AtCrash, completed: Mapping[tuple[str, int], object]
) -> None:
    """Steps completed before the crash in workflows the restart resumed were replayed."""
    done = service.cli("inspect", "crash", "--json")
    assert done.returncode == 0, done.stderr
    marked = {
        (wf["workflow_id"], step["step_id"])
        for wf in json.loads(done.stdout)["workflows"]
        for step in wf["steps"]
        if step["replayed"]
    }
    resumed = {wid for wid, status in at_crash.statuses.items() if status == "PENDING"}
    assert marked == {key for key in completed if key[0] in resumed}
    assert marked, "the batch workflow itself was resumed, so something was replayed"


def test_invariant_check_catches_counters_bumped_outside_the_transaction(
    service: ServiceRunner,
) -> None:
    broken = "lab.publishers.broken:CounterOutsideTransactionPublisher"
    service.declare({"orders": broken}, chunk_size=CHUNK, chunk_concurrency=1)
    # Hit 1: the ledger transaction's commit; hit 2: the separate counter step's commit.
    crash_then_restart(service, "chunk.after_commit=crash@2", "broken")

    summary = service.wait_batch("broken")
    assert summary["published"] == TOTAL  # the ledger itself is right...
    report = service.check({"broken": TOTAL})
    assert not report.ok  # ...but the counters counted one chunk twice
    assert report.violations == [
        f"local counter orders/default = {TOTAL + CHUNK}, ledger has {TOTAL}",
        f"global counter default = {TOTAL + CHUNK}, sum of locals = {TOTAL + CHUNK}, "
        f"ledger has {TOTAL}",
    ]


def test_sigkill_of_dbos_start_during_a_5000_message_batch_then_dbos_start_again(
    service: ServiceRunner,
) -> None:
    service.declare(chunk_size=50, chunk_concurrency=2)
    # A small delay per chunk keeps the batch in flight long enough to be killed mid-way.
    service.start("chunk.start=delay(30)@every", via_dbos_start=True)
    service.publish("orders", 5000, "big")
    deadline = time.monotonic() + 120
    while len(_ledger_rows(service)) < 500 and time.monotonic() < deadline:
        time.sleep(0.02)
    service.kill()
    rows_before = len(_ledger_rows(service))
    assert 500 <= rows_before < 5000, "the kill must land mid-batch"

    service.start(via_dbos_start=True)
    assert service.wait_batch("big")["published"] == 5000
    report = service.check({"big": 5000})
    assert report.ok and report.ledger_rows == 5000, report.violations
    assert service.active_workflows() == []
