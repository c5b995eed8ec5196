"""An honest fleet, with the real service and real signals on SQLite: a clean stop (SIGTERM) is
adopted by the next worker without counting or logging a takeover, a SIGKILL then a restart
counts exactly one; a publisher the running worker did not declare is refused."""

from __future__ import annotations

import pytest

from dbos_publishers.ops import _fleet_view as fleet
from lab.scenarios.harness import EVENT_PUBLISHER
from tests.helpers import ServiceRunner


def _events(runner: ServiceRunner, name: str) -> list[dict[str, object]]:
    return [r for r in runner.records() if r.get("event") == name]


@pytest.mark.slow
def test_sigterm_then_restart_adopts_and_sigkill_then_restart_counts_one_takeover(
    sqlite_runner: ServiceRunner,
) -> None:
    sqlite_runner.start()
    assert sqlite_runner.stop() == 0
    sqlite_runner.start()
    settings = sqlite_runner.settings()
    after_stop = fleet.gather(settings)
    assert (after_stop.takeovers_total, after_stop.adoptions_total) == (0, 1)
    assert after_stop.takeovers == []
    assert _events(sqlite_runner, "worker_taken_over") == []
    assert len(_events(sqlite_runner, "worker_adopted")) == 1
    states = [w.state for w in after_stop.workers]
    assert states == ["alive", "stopped"], states

    sqlite_runner.kill()
    sqlite_runner.start()
    after_kill = fleet.gather(settings)
    assert (after_kill.takeovers_total, after_kill.adoptions_total) == (1, 1)
    assert [t["reason"] for t in after_kill.takeovers] == ["exited"]
    assert len(_events(sqlite_runner, "worker_taken_over")) == 1
    assert sqlite_runner.stop() == 0


@pytest.mark.slow
def test_a_publisher_added_to_the_file_after_the_start_is_refused_in_one_line(
    sqlite_runner: ServiceRunner,
) -> None:
    sqlite_runner.start()
    sqlite_runner.declare({"orders": EVENT_PUBLISHER, "billing": EVENT_PUBLISHER})
    refused = sqlite_runner.cli("publish", "billing", "--count", "5", "--batch-id", "b1")
    assert refused.returncode == 2, refused.stderr
    assert refused.stdout == ""
    assert refused.stderr.strip() == (
        "error: no running worker declares publisher 'billing' (they run: orders); restart the "
        "workers so they read the publishers file again"
    )
    assert sqlite_runner.workflows("b1") == []  # nothing enqueued
    accepted = sqlite_runner.cli("publish", "orders", "--count", "5", "--batch-id", "o1")
    assert accepted.returncode == 0, accepted.stderr
    assert sqlite_runner.stop() == 0
