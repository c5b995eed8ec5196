"""A test harness for publisher authors: the service built, migrated and launched in the test's
own process on SQLite files in a folder of the test's, so a test publishes a batch through its
publisher and reads the ledger and both counters back within seconds.

    from dbos_publishers.testing import running_service

    def test_my_publisher(tmp_path):
        with running_service(tmp_path, PUBLISHERS_TOML) as service:
            summary = service.publish("outbox", count=250, batch_id="b1")
            assert service.ledger_state({"b1": 250}).report.ok

One service at a time per process: DBOS is a process-wide singleton.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dbos_publishers import _batches as batches
from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers import _failpoints as failpoints
from dbos_publishers import _migrate as migrate
from dbos_publishers import _runtime as runtime
from dbos_publishers._config import Settings
from dbos_publishers._wire import BatchSummary
from dbos_publishers.store import _counters as counters
from dbos_publishers.store import _invariants as invariants
from dbos_publishers.store import _ledger as ledger
from dbos_publishers.store._database import short_lived_engine

# Quick queues for a test: a queued workflow waits 25 ms on average, four chunks at once.
QUEUE_TUNING = "[queues]\nchunk_concurrency = 4\npolling_interval_sec = 0.05\n"
RESULT_POLL_SEC = 0.05

__all__ = ["InProcessService", "LedgerState", "running_service", "sqlite_settings"]


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

    def submit(self, publisher: str, count: int, batch_id: str, topic: str = "default") -> str:
        """Enqueue a batch through DBOS's client, as the CLI does; returns its workflow id."""
        submission = batches.validate(
            self.settings, publisher, count=count, topic=topic, batch_id=batch_id
        )
        with dbos_gateway.client(self.settings.system_db) as client:
            batches.enqueue(client, submission)
        batches.record_submission(self.settings, submission)
        return submission.workflow_id

    def publish(
        self, publisher: str, count: int, batch_id: str = "b1", topic: str = "default"
    ) -> BatchSummary:
        """Submit a batch and wait for its summary."""
        workflow_id = self.submit(publisher, count, batch_id, topic)
        with dbos_gateway.client(self.settings.system_db) as client:
            summary: BatchSummary = dbos_gateway.wait_result(
                client, workflow_id, poll_sec=RESULT_POLL_SEC
            )
        return summary

    def step_names(self, workflow_id: str) -> list[str]:
        """The steps DBOS recorded for a workflow, in order."""
        with dbos_gateway.client(self.settings.system_db) as client:
            return [step["function_name"] for step in dbos_gateway.steps(client, workflow_id)]

    def ledger_state(self, batches_published: Mapping[str, int]) -> LedgerState:
        """The invariants for these batches (id -> messages) and both counters' values."""
        with short_lived_engine(self.settings.app_db) as engine, engine.connect() as conn:
            return LedgerState(
                report=invariants.check(conn, dict(batches_published)),
                local_counters=counters.local_counter_values(conn),
                global_counters={t.topic: t.global_counter for t in ledger.topic_counts(conn)},
            )


def sqlite_settings(folder: Path, publishers: Path, **extra: str) -> Settings:
    """Settings for both databases as SQLite files in `folder`, and a publishers file."""
    return Settings.from_env(
        {
            "APP_PUBLISHERS_FILE": str(publishers),
            "DBOS_SYSTEM_DATABASE_URL": f"sqlite:///{folder / 'system.sqlite'}",
            "APP_DATABASE_URL": f"sqlite:///{folder / 'app.sqlite'}",
            **extra,
        }
    )


def start_service(folder: Path, publishers: str, *, failpoints: str = "") -> InProcessService:
    """Build, migrate and launch the service from `[[publishers]]` entries (quick queue tuning
    is added); the caller stops it."""
    path = folder / "publishers.toml"
    path.write_text(QUEUE_TUNING + publishers)
    settings = sqlite_settings(
        folder,
        path,
        APP_FAILPOINTS=failpoints,
        APP_LOG_LEVEL="WARNING",
        APP_HTTP_PORT="off",
    )
    migrate.upgrade_all(settings)
    service = InProcessService(settings, runtime.build(runtime.validate(settings)))
    try:
        runtime.launch(service.rt)
    except BaseException:
        service.stop()
        raise
    return service


@contextmanager
def running_service(
    folder: Path, publishers: str, *, failpoints: str = ""
) -> Iterator[InProcessService]:
    """The service running in this process for the `with` block; stopped (publishers closed,
    failpoints disarmed) however the block ends."""
    service = start_service(folder, publishers, failpoints=failpoints)
    try:
        yield service
    finally:
        service.stop()
        _disarm()


def _disarm() -> None:
    failpoints.arm("")
