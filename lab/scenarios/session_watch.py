"""The property the chunk transactions' bounds exist for, checked directly: no chunk transaction
of a stuck worker outlives its lease. From the fault's start, a side connection samples
`pg_stat_activity` on the scenario's Postgres for the transactions that worker's chunk sessions
(`application_name` 'dbos-publishers chunk <executor id>') had open then, until Postgres has
ended the last of them. Watched by (pid, xact_start): a partitioned worker's session stays listed
while its link is down, and a hung worker's other chunks open and close transactions of their
own under the same name meanwhile."""

from __future__ import annotations

import threading
import time
from typing import Any

import sqlalchemy as sa
import structlog

from dbos_publishers._config import DatabaseUrl
from dbos_publishers._connections import CHUNK_APPLICATION_NAME
from dbos_publishers.store._database import make_engine

log = structlog.get_logger()

SAMPLE_SEC = 0.1
# Postgres ends a stuck chunk transaction at TTL/2 (idle_in_transaction_session_timeout); the
# limit is the whole TTL plus a margin a loaded CI machine does not eat.
SLACK_SEC = 2.0
STOP_WAIT_SEC = 5.0
_OPEN = sa.text(
    "SELECT pid, xact_start FROM pg_stat_activity "
    "WHERE application_name = :name AND xact_start IS NOT NULL"
)

Transaction = tuple[int, Any]  # (pid, xact_start)


class SessionWatch:
    """Samples in a thread of its own, so the lab can go on with the fault meanwhile."""

    def __init__(self, url: DatabaseUrl, executor_id: str, since: float) -> None:
        self.name = f"{CHUNK_APPLICATION_NAME} {executor_id}"[:63]
        self.since = since
        self.ended_sec: float | None = None  # seconds after `since`, once none is left
        self.error: str | None = None
        self._stop = threading.Event()
        self._engine = make_engine(url, poolclass=sa.pool.NullPool)
        self._conn = self._engine.connect()
        self.watched = self._sample()
        self._thread = threading.Thread(target=self._run, name="session-watch", daemon=True)
        self._thread.start()

    def _sample(self) -> set[Transaction]:
        rows = self._conn.execute(_OPEN, {"name": self.name}).all()
        self._conn.rollback()  # a new snapshot of pg_stat_activity each time
        return {(row.pid, row.xact_start) for row in rows}

    def _run(self) -> None:
        """Until every watched transaction is gone from the listing, or the lab stops it."""
        try:
            left = set(self.watched)
            while left and not self._stop.wait(SAMPLE_SEC):
                left &= self._sample()
            if not left:
                self.ended_sec = round(time.time() - self.since, 2)
        except sa.exc.SQLAlchemyError as exc:
            self.error = str(exc).splitlines()[0]
            log.warning("session_watch_failed", name=self.name, error=self.error)
        finally:
            self._conn.close()
            self._engine.dispose()

    def stop(self) -> float | None:
        """Seconds from the fault's start to the last watched transaction's end; None if one
        was still open (or the watch failed) when stopped."""
        self._stop.set()
        self._thread.join(STOP_WAIT_SEC)
        return self.ended_sec
