"""Fixtures: the service built in this process on SQLite files (no subprocess), a fresh DBOS for
each test, so a test submits through DBOS's client and reads both databases within seconds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from dbos_publishers import BatchSummary
from dbos_publishers import _batches as batches
from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers import _failpoints as failpoints
from dbos_publishers import _migrate as migrate
from dbos_publishers import _runtime as runtime
from dbos_publishers._config import Settings
from dbos_publishers.ops._api import create_app, serve_in_thread
from dbos_publishers.store import _invariants as invariants
from dbos_publishers.store import _ledger as ledger
from dbos_publishers.store._database import short_lived_engine
from tests.helpers import process_state_restored, sqlite_settings

QUEUE_TUNING = "[queues]\nchunk_concurrency = 4\npolling_interval_sec = 0.05\n"
RESULT_POLL_SEC = 0.05


@dataclass(frozen=True)
class LedgerState:
    """What the application database holds after a run."""

    report: invariants.InvariantReport  # the invariants, for the batches published
    local_counters: list[tuple[str, str, int]]  # (publisher, topic, value)
    global_counters: dict[str, int]  # topic -> value


@dataclass
class InProcessService:
    """The runtime built, opened and launched in this process, as `serve` does."""

    settings: Settings
    rt: runtime.Runtime
    stopped: bool = False

    def stop(self) -> None:
        """Shut down as the service does: DBOS first, then the publishers are closed."""
        if not self.stopped:
            self.stopped = True
            runtime.shutdown(self.rt)

    def submit(self, publisher: str, count: int, batch_id: str) -> str:
        """Enqueue a batch through DBOS's client, as the CLI does; returns its workflow id."""
        submission = batches.validate(
            self.settings, publisher, count=count, topic="default", batch_id=batch_id
        )
        with dbos_gateway.client(self.settings.system_db) as client:
            batches.enqueue(client, submission)
        return submission.workflow_id

    def publish(self, publisher: str, count: int, batch_id: str = "b1") -> BatchSummary:
        """Submit a batch and wait for its summary."""
        workflow_id = self.submit(publisher, count, batch_id)
        with dbos_gateway.client(self.settings.system_db) as client:
            summary: BatchSummary = dbos_gateway.wait_result(
                client, workflow_id, poll_sec=RESULT_POLL_SEC
            )
        return summary

    def step_names(self, workflow_id: str) -> list[str]:
        """The steps DBOS recorded for a workflow, in order."""
        with dbos_gateway.client(self.settings.system_db) as client:
            return [step["function_name"] for step in dbos_gateway.steps(client, workflow_id)]

    def ledger_state(self, batches_published: dict[str, int]) -> LedgerState:
        with short_lived_engine(self.settings.app_db) as engine, engine.connect() as conn:
            return LedgerState(
                report=invariants.check(conn, batches_published),
                local_counters=ledger.local_counter_values(conn),
                global_counters={t.topic: t.global_counter for t in ledger.topic_counts(conn)},
            )


StartService = Callable[..., InProcessService]


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[StartService]:
    """Build and launch the service in this process from a publishers file's [[publishers]]
    entries (queue tuning is added); shut down, with the publishers closed, after the test."""
    started: list[InProcessService] = []

    def start(publishers: str, *, failpoint_spec: str = "") -> InProcessService:
        assert not started, "one service per test"
        path = tmp_path / "publishers.toml"
        path.write_text(QUEUE_TUNING + publishers)
        settings = sqlite_settings(
            tmp_path,
            path,
            APP_FAILPOINTS=failpoint_spec,
            APP_LOG_LEVEL="WARNING",
            APP_HTTP_PORT="off",
        )
        migrate.upgrade_all(settings)
        service = InProcessService(settings, runtime.build(runtime.validate(settings)))
        started.append(service)
        runtime.launch(service.rt)
        return service

    with process_state_restored():
        try:
            yield start
        finally:
            for service in started:
                service.stop()
            failpoints.arm("")


Api = tuple[httpx.Client, Settings]


@contextmanager
def served_api(tmp_path: Path, publishers: str, token: str | None = None) -> Iterator[Api]:
    """The HTTP API served by uvicorn in a thread of this process on SQLite files (migrated, no
    DBOS launched: submitted batches wait ENQUEUED), and a client that sends the token."""
    path = tmp_path / "publishers.toml"
    path.write_text(publishers)
    settings = sqlite_settings(tmp_path, path)
    migrate.upgrade_all(settings)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with dbos_gateway.client(settings.system_db) as client:
        server = serve_in_thread(create_app(settings, client, token=token), "127.0.0.1", 0)
        port = server.servers[0].sockets[0].getsockname()[1]
        base_url = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base_url, timeout=30, headers=headers) as http:
                yield http, settings
        finally:
            server.should_exit = True
