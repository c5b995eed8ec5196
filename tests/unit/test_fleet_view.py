"""The workers as people see them: a worker whose heartbeat is older than its lease TTL is shown
(and counted) as expired, never as alive."""

from __future__ import annotations

from typing import Any, cast

from dbos_publishers.ops import _fleet_view as fleet
from dbos_publishers.store._leases import TakeoverRow, WorkerRow


def _row(executor: str, age: float, state: Any = "alive") -> WorkerRow:
    return WorkerRow(
        worker_id=executor,
        executor_id=executor,
        app_version="1",
        host="h",
        pid=1,
        process_token="t",
        started_at=0.0,
        heartbeat_at=0.0,
        lease_ttl_sec=10.0,
        state=state,
        taken_over_by=None,
        taken_over_at=None,
        heartbeat_age=age,
    )


def test_a_worker_past_its_ttl_is_expired_not_alive() -> None:
    rows = [_row("fresh", 1.0), _row("silent", 10.5), _row("left", 99.0, "stopped")]
    snapshot = fleet.build(cast(Any, None), rows, [], [])
    assert {w.executor_id: w.state for w in snapshot.workers} == {
        "fresh": "alive",
        "silent": "expired",
        "left": "stopped",
    }
    assert snapshot.counts() == {
        "alive": 1,
        "expired": 1,
        "stopped": 1,
        "dead": 0,
        "taken_over": 0,
    }


def _takeover(worker: str, reason: str) -> TakeoverRow:
    return TakeoverRow(1, worker, worker, "w", "w", reason, 0.0, 0.0, 0)


def test_a_clean_stop_is_adopted_not_taken_over_and_gone_workers_age_out() -> None:
    rows = [
        _row("alive", 1.0),
        _row("left", 30.0, "taken_over"),  # stopped cleanly, its work adopted
        _row("died", 40.0, "taken_over"),  # SIGKILLed, taken over
        _row("long-gone", fleet.GONE_SHOWN_SEC + 1, "taken_over"),
        _row("long-stopped", fleet.GONE_SHOWN_SEC + 1, "stopped"),
    ]
    takeovers = [_takeover("left", "stopped"), _takeover("died", "exited")]
    snapshot = fleet.build(cast(Any, None), rows, takeovers, [])
    shown = {w.executor_id: w.state for w in snapshot.workers}
    assert shown == {"alive": "alive", "left": "stopped", "died": "taken_over"}
    assert (snapshot.takeovers_total, snapshot.adoptions_total) == (1, 1)
    assert [t["reason"] for t in snapshot.takeovers] == ["exited"]
