"""Work of a publisher the service does not declare: the start goes on, one warning per publisher
says how to resolve it, DBOS refuses to dispatch the work once and leaves it visible, and the
declared publishers' work runs meanwhile."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dbos_publishers import _batches as batches
from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers import _migrate as migrate
from dbos_publishers import _runtime as runtime
from dbos_publishers._config import Settings
from dbos_publishers.ops import _status as status
from tests.helpers import sqlite_settings
from tests.inprocess.conftest import StartService

DISPATCH_DEADLINE_SEC = 60


@dataclass
class Recorder:
    """Stands in for a module's structlog logger and keeps every event."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __getattr__(self, _level: str) -> Any:
        return lambda event, **fields: self.events.append((event, fields))


def _submit_for_ghost(tmp_path: Path) -> None:
    """A client whose publishers file declares `ghost` (the service's does not) submits a batch."""
    path = tmp_path / "client.toml"
    path.write_text('[[publishers]]\nname = "ghost"\n')
    client = sqlite_settings(tmp_path, path)
    migrate.upgrade_all(client)
    batch = batches.validate(client, "ghost", count=5, topic="default", batch_id="haunt")
    batches.submit(client, batch)


def _dispatched(settings: Settings, workflow_id: str) -> Any:
    """The workflow once a queue has taken it (no longer ENQUEUED)."""
    deadline = time.monotonic() + DISPATCH_DEADLINE_SEC
    with dbos_gateway.client(settings.system_db) as client:
        while time.monotonic() < deadline:
            (found,) = dbos_gateway.workflows(client, [workflow_id])
            if found.status != "ENQUEUED":
                return found
            time.sleep(0.05)
    raise AssertionError(f"{workflow_id} was never dequeued")


def test_work_of_an_undeclared_publisher_never_blocks_a_start(
    start_service: StartService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _submit_for_ghost(tmp_path)
    logged = Recorder()
    monkeypatch.setattr(runtime, "log", logged)
    service = start_service('[[publishers]]\nname = "orders"\n')  # it used to refuse here

    (warning,) = [fields for event, fields in logged.events if event == "orphaned_work"]
    assert (warning["publisher"], warning["workflows"]) == ("ghost", 1)
    assert warning["resolve"] == (
        "declare publisher 'ghost' again in the publishers file (APP_PUBLISHERS_FILE) and "
        "restart, or give its work up: dbos-publishers cancel haunt"
    )
    # DBOS dequeues it, cannot find the instance, and leaves it PENDING on this worker.
    assert _dispatched(service.settings, "batch-haunt").status == "PENDING"
    summary = service.publish("orders", 30, "meanwhile")  # the queues go on
    assert (summary["published"], summary["failed"]) == (30, 0)
    with dbos_gateway.client(service.settings.system_db) as client:
        (ghost,) = dbos_gateway.workflows(client, ["batch-haunt"])
    # Dispatched once in all the polls the other batch took: no retry loop.
    assert (ghost.status, ghost.recovery_attempts) == ("PENDING", 1)
    snapshot = status.gather(service.settings)
    assert snapshot.orphans == {"ghost": 1}
    assert snapshot.healthy is False
