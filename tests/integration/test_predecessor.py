"""A restart that overlaps the process it replaces (`dbos start` exits at once on SIGTERM, before
its service has stopped): the new worker waits for a twin on its own host instead of refusing,
and still refuses at once a twin on another host."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa

from dbos_publishers import _migrate as migrate
from dbos_publishers._config import DatabaseUrl, LeaseSettings, Settings
from dbos_publishers.fleet import _workers as workers
from dbos_publishers.store import _leases as leases
from dbos_publishers.store._database import make_engine
from dbos_publishers.store._leases import WorkerIdentity
from tests.helpers import Databases

DEADLINE_SEC = 60
EXECUTOR = "replica-1"  # the twin and the newcomer share it, as a restarted container does
PREDECESSOR_PID = 1


@dataclass
class Recorder:
    """Stands in for fleet._workers' logger: keeps every event, and says when one was logged."""

    events: list[str] = field(default_factory=list)
    waiting: threading.Event = field(default_factory=threading.Event)

    def __getattr__(self, _level: str) -> Any:
        def record(event: str, **_fields: object) -> None:
            self.events.append(event)
            if event == "waiting_for_predecessor":
                self.waiting.set()

        return record


@pytest.fixture
def settings(databases: Databases) -> Settings:
    app_db = DatabaseUrl.parse(databases.app_url, "app")
    if databases.backend == "sqlite":
        migrate.upgrade(app_db)  # the Postgres copy comes migrated from the template
    return Settings(
        system_db=DatabaseUrl.parse(databases.system_url, "system"),
        app_db=app_db,
        publishers=(),
        executor_id=EXECUTOR,
        leases=LeaseSettings(heartbeat_sec=0.5, ttl_sec=5),
    )


def _announce(settings: Settings, host: str) -> str:
    """The twin's lease, as its service wrote it when it joined; returns its worker id. Its
    process is pid 1 (running for sure, and not this one), so only its lease can end it."""
    twin = WorkerIdentity(uuid.uuid4().hex, EXECUTOR, "1", host, PREDECESSOR_PID, _token(), 5.0)
    with _engine(settings) as engine, engine.begin() as conn:
        leases.register(conn, twin)
    return twin.worker_id


def _token() -> str:
    token = workers.process_token(PREDECESSOR_PID)
    assert token is not None
    return token


@contextmanager
def _engine(settings: Settings) -> Iterator[sa.Engine]:
    engine = make_engine(settings.app_db)
    try:
        yield engine
    finally:
        engine.dispose()


def test_a_worker_waits_for_its_predecessor_on_this_host_to_stop(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    twin = _announce(settings, socket.gethostname())
    logged = Recorder()
    monkeypatch.setattr(workers, "log", logged)
    worker = workers.Worker(settings, workers.identity(settings))
    outcome: dict[str, object] = {}

    def join() -> None:
        try:
            outcome["claims"] = worker.join()
        except Exception as exc:  # the old code refused here at once
            outcome["error"] = exc

    joining = threading.Thread(target=join)
    joining.start()
    assert logged.waiting.wait(DEADLINE_SEC), outcome
    with _engine(settings) as engine, engine.begin() as conn:
        leases.stop(conn, twin)  # the old service has stopped: its last act
    joining.join(DEADLINE_SEC)
    claims = outcome["claims"]
    assert isinstance(claims, list)
    assert [(c.worker.worker_id, c.reason) for c in claims] == [(twin, "stopped")]
    assert logged.events.count("waiting_for_predecessor") == 1
    worker.leave()


def test_a_live_twin_on_another_host_is_refused_at_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _announce(settings, "another-host")
    logged = Recorder()
    monkeypatch.setattr(workers, "log", logged)
    worker = workers.Worker(settings, workers.identity(settings))
    twin = "SQLite takes one worker" if settings.system_db.backend == "sqlite" else "live worker"
    with pytest.raises(workers.WorkerRefusedError, match=twin):
        worker.join()
    assert logged.events == []  # never waited
    worker.engine.dispose()
