"""Database outages the lab meets while it polls: told apart from "not created yet", timed, and
reported as infrastructure events rather than swallowed or mistaken for violations."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import sqlalchemy as sa

from dbos_publishers._errors import UnreachableDatabaseError
from dbos_publishers.store._database import connection_failure

T = TypeVar("T")
OUTAGE_LIMIT_SEC = 60.0  # a database gone longer than this stops the scenario


class LabOutageError(UnreachableDatabaseError):
    """The lab could not reach a database for longer than OUTAGE_LIMIT_SEC."""


@dataclass
class Outages:
    """Tracks the current outage (if any) and the finished ones, as lines for the report."""

    started: float = field(default_factory=time.monotonic)  # the run's start, for offsets
    events: list[str] = field(default_factory=list)
    down_since: float | None = None
    reason: str = ""
    limit_sec: float = OUTAGE_LIMIT_SEC

    def poll(self, read: Callable[[], T], default: T) -> T:
        """`read()`; `default` while the tables do not exist yet or the database is down."""
        try:
            value = read()
        except (sa.exc.DBAPIError, UnreachableDatabaseError) as exc:
            reason = connection_failure(exc)
            if reason is None:
                return default  # not created yet: the service has not migrated
            self.failed(reason)
            return default
        self.recovered()
        return value

    def retry(self, read: Callable[[], T]) -> T:
        """`read()` until it gets through an outage; LabOutageError past the limit."""
        while True:
            try:
                value = read()
            except (sa.exc.DBAPIError, UnreachableDatabaseError) as exc:
                reason = connection_failure(exc)
                if reason is None:
                    raise
                self.failed(reason)
                time.sleep(0.2)
                continue
            self.recovered()
            return value

    def failed(self, reason: str) -> None:
        now = time.monotonic()
        if self.down_since is None:
            self.down_since, self.reason = now, reason
        elif now - self.down_since > self.limit_sec:
            self.recovered()
            raise LabOutageError(
                f"a database was unreachable for over {self.limit_sec:.0f} s: {reason}"
            )

    def recovered(self) -> None:
        if self.down_since is None:
            return
        now = time.monotonic()
        self.events.append(
            f"database unreachable for {now - self.down_since:.1f} s, from "
            f"{self.down_since - self.started:.1f} s into the run: {self.reason}"
        )
        self.down_since = None
