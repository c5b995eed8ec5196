"""The running service's health: a database outage told once (when it starts and when it ends,
however many threads fail meanwhile), and a watchdog that ends the process with one clear line
when it could otherwise live on without working, so a supervisor restarts it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
import structlog

from dbos_publishers._config import DatabaseUrl
from dbos_publishers.store._database import connection_failure, short_lived_engine

log = structlog.get_logger()

PROBE_SEC = 1.0  # while a database is down: how often the watchdog tries it again
EXIT_STALLED = 1
# Text of DBOS's log records for a failed connection (it logs the driver's message).
CONNECTION_TROUBLE = (
    "OperationalError",
    "connection failed",
    "server closed the connection",
    "terminating connection",
    "Notification listener error",
    "the database system is",
    "connection is closed",
)
RECOVERY_FAILED = "Exception encountered when recovering workflow"


@dataclass
class DatabaseHealth:
    """Whether the databases answer; one line when they stop and one when they answer again."""

    databases: tuple[DatabaseUrl, ...]
    down_since: float | None = None
    reason: str = ""
    outages: int = 0
    suspected: str = ""  # a connection failed since the last probe: why
    recovery_failures: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def suspect(self, reason: str) -> None:
        """A connection failed: an outage, or only a stale or terminated connection (which
        its pool replaces). The watchdog's next probe tells which; until then, silence."""
        if not self.down and not self.suspected:
            self.suspected = reason

    def failed(self, reason: str) -> None:
        with self._lock:
            if self.down_since is not None:
                return
            self.down_since, self.reason = time.monotonic(), reason
            self.outages += 1
        log.warning("database_unreachable", reason=reason, retry_every_sec=PROBE_SEC)

    def probe(self) -> None:
        """After a failed connection, try every database: an outage starts while one does not
        answer, and ends once all of them do."""
        if not (self.down or self.suspected):
            return
        for url in self.databases:
            try:
                with short_lived_engine(url) as engine, engine.connect() as conn:
                    conn.execute(sa.text("SELECT 1"))
            except sa.exc.DBAPIError as exc:
                reason = connection_failure(exc)
                if reason is None:
                    raise
                self.failed(reason)
                return
        self._answered()

    def _answered(self) -> None:
        with self._lock:
            since, self.down_since = self.down_since, None
            dropped, self.suspected = self.suspected, ""
        if since is not None:
            log.info("database_reachable", down_sec=round(time.monotonic() - since, 2))
        elif dropped:
            log.debug("database_connection_dropped", reason=dropped)  # replaced by its pool

    def screen(self, record: logging.LogRecord) -> bool:
        """A logging filter for DBOS's records: connection failures become the one outage line,
        a failed recovery is kept for the watchdog; everything else passes."""
        if record.levelno < logging.WARNING or not _from_dbos(record.name):
            return True
        message = record.getMessage()
        if message.startswith(RECOVERY_FAILED):
            self.recovery_failures.append(message.removeprefix(RECOVERY_FAILED).strip(" :"))
            return True
        trouble = next((t for t in CONNECTION_TROUBLE if t in message), None)
        if trouble is None and record.exc_info and record.exc_info[1] is not None:
            trouble = next((t for t in CONNECTION_TROUBLE if t in str(record.exc_info[1])), None)
        if trouble is None:
            return True
        self.suspect(message.splitlines()[0][:200])
        return False


@dataclass
class Watchdog:
    """Every PROBE_SEC: end an outage once the databases answer; exit the process when a thread
    the service cannot work without has died, or DBOS gave up recovering a workflow (it would
    stay PENDING, owned by this process, until a restart)."""

    health: DatabaseHealth
    threads_alive: Callable[[], list[str]]  # names of required threads that are not alive
    exit: Callable[[int], object]
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._run, name="watchdog", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(PROBE_SEC):
            try:
                self.check()
            except Exception:  # the watchdog must outlive any one check
                log.exception("watchdog_check_failed")

    def check(self) -> None:
        self.health.probe()
        dead = self.threads_alive()
        if self._stop.is_set():
            return
        if dead:
            self._give_up(f"a thread the service needs has stopped: {', '.join(dead)}")
        elif self.health.recovery_failures and not self.health.down:
            failed = (self.health.recovery_failures[0].split() or ["?"])[0]
            self._give_up(f"DBOS could not recover workflow {failed}: PENDING until a restart")

    def _give_up(self, why: str) -> None:
        log.error("service_stalled", reason=why, action="exiting so a supervisor restarts it")
        self.exit(EXIT_STALLED)


def _from_dbos(logger: str) -> bool:
    """DBOS's own loggers (`dbos`, `dbos.*`), not this framework's (`dbos_publishers.*`)."""
    return logger == "dbos" or logger.startswith("dbos.")
