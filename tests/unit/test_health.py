"""The service's outage screen and watchdog: an outage told once however many DBOS threads fail,
a dropped connection not mistaken for an outage, and an exit rather than a live process that has
stopped working."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from dbos_publishers._config import DatabaseUrl
from dbos_publishers.fleet._health import EXIT_STALLED, RECOVERY_FAILED, DatabaseHealth, Watchdog


def _record(message: str, name: str = "dbos", level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def _closed_port_url() -> DatabaseUrl:
    with socket.socket() as probe:  # bound, never listening: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return DatabaseUrl.parse(f"postgresql://postgres@127.0.0.1:{port}/gone", "app")


@pytest.fixture
def reachable(tmp_path: Path) -> DatabaseUrl:
    return DatabaseUrl.parse(f"sqlite:///{tmp_path / 'app.sqlite'}", "app")


LOST = "Exception reloading queue q: (psycopg.OperationalError) connection failed: refused"


def test_connection_failures_are_screened_and_everything_else_passes(
    reachable: DatabaseUrl,
) -> None:
    health = DatabaseHealth((reachable,))
    assert health.screen(_record(LOST)) is False
    assert health.suspected.startswith("Exception reloading queue")
    assert health.screen(_record("Workflow already exists in queue")) is True
    assert health.screen(_record(LOST, level=logging.INFO)) is True  # below warning: as is
    assert (
        health.screen(_record(LOST, name="dbos_publishers.ops._api")) is True
    )  # only DBOS's own records


def test_a_dropped_connection_with_the_database_up_is_no_outage(reachable: DatabaseUrl) -> None:
    health = DatabaseHealth((reachable,))
    health.screen(_record(LOST))
    with capture_logs() as logs:
        health.probe()
    assert (health.down, health.suspected, health.outages) == (False, "", 0)
    assert [e["event"] for e in logs if e["log_level"] != "debug"] == []


def test_an_outage_is_told_once_and_its_end_once(reachable: DatabaseUrl) -> None:
    health = DatabaseHealth((_closed_port_url(),))
    with capture_logs() as logs:
        for _ in range(3):  # many threads fail, the watchdog probes again and again
            health.screen(_record(LOST))
            health.probe()
        assert health.down
        health.databases = (reachable,)  # the server is back
        health.probe()
        health.probe()
    events = [e["event"] for e in logs]
    assert events == ["database_unreachable", "database_reachable"]
    assert (health.down, health.outages) == (False, 1)


def _watchdog(health: DatabaseHealth, stopped: list[str]) -> tuple[Watchdog, list[int]]:
    exits: list[int] = []
    return Watchdog(health, lambda: stopped, exits.append), exits


def test_the_watchdog_exits_when_a_thread_the_service_needs_has_stopped(
    reachable: DatabaseUrl,
) -> None:
    watchdog, exits = _watchdog(DatabaseHealth((reachable,)), [])
    watchdog.check()
    assert exits == []
    watchdog, exits = _watchdog(DatabaseHealth((reachable,)), ["Thread-3 (queue_thread)"])
    with capture_logs() as logs:
        watchdog.check()
    assert exits == [EXIT_STALLED]
    assert "queue_thread" in logs[-1]["reason"]


def test_a_workflow_dbos_failed_to_recover_ends_the_process_once_the_database_is_back(
    reachable: DatabaseUrl,
) -> None:
    health = DatabaseHealth((_closed_port_url(),))
    assert health.screen(_record(f"{RECOVERY_FAILED} wf-7:", level=logging.ERROR)) is True
    health.failed("connection refused")
    watchdog, exits = _watchdog(health, [])
    watchdog.check()
    assert exits == []  # down: a restart now would fail too
    health.databases = (reachable,)
    watchdog.check()
    assert exits == [EXIT_STALLED]
