"""`publish --wait`: follow a submitted batch to its end, with a live line on a terminal, a
deadline, and a hint when no service picks the batch up."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from dbos import DBOSClient
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from dbos_publishers import _batches as batches
from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers._batches import Submission
from dbos_publishers._config import Settings
from dbos_publishers._dbos_gateway import TERMINAL_STATUSES
from dbos_publishers.store import _batch_records as batch_records
from dbos_publishers.store._database import short_lived_engine, sqlite_file_missing

HINT_AFTER_SEC = 5.0  # still ENQUEUED this long: say that no service seems to be running
POLL_SEC = 0.5


class WaitTimedOutError(Exception):
    """--timeout passed before the batch ended; the batch itself goes on."""


@dataclass(frozen=True)
class Seen:
    """One look at the batch: DBOS's status of its workflow and the ledger's count."""

    status: str | None  # None: DBOS has no such workflow (yet)
    published: int
    messages: int | None  # None until a service plans the batch


def no_service_hint(batch_id: str) -> str:
    return (
        f"no service has picked up batch {batch_id}: is `dbos start` running against this database?"
    )


def follow(
    settings: Settings,
    submission: Submission,
    *,
    timeout: float | None,
    live: bool,
    warn: Callable[[str], None],
) -> dict[str, Any]:
    """The batch's summary once it ends; BatchEndedError if it ended without one,
    WaitTimedOutError at the deadline. `warn` gets the no-service hint, once."""
    batch_id, workflow_id = submission.request["batch_id"], submission.workflow_id
    started = time.monotonic()
    hinted = False
    with (
        dbos_gateway.client(settings.system_db) as client,
        short_lived_engine(settings.app_db) as engine,
        _live_line(batch_id, submission.request["count"], enabled=live) as show,
    ):
        while True:
            seen = look(client, engine, settings, batch_id, workflow_id)
            waited = time.monotonic() - started
            show(seen, waited)
            if seen.status in TERMINAL_STATUSES:
                return batches.outcome(client, workflow_id)
            if seen.status == "ENQUEUED" and waited >= HINT_AFTER_SEC and not hinted:
                warn(no_service_hint(batch_id))
                hinted = True
            if timeout is not None and waited >= timeout:
                raise WaitTimedOutError(_timed_out(batch_id, seen, timeout))
            time.sleep(POLL_SEC)


def look(
    client: DBOSClient, engine: sa.Engine, settings: Settings, batch_id: str, workflow_id: str
) -> Seen:
    found = dbos_gateway.workflows(client, [workflow_id])
    progress = _progress(engine, settings, batch_id)
    return Seen(
        status=found[0].status if found else None,
        published=progress.published if progress else 0,
        messages=progress.messages if progress else None,
    )


def _progress(
    engine: sa.Engine, settings: Settings, batch_id: str
) -> batch_records.BatchProgress | None:
    """Best effort: the application database may not exist until a service starts (a SQLite
    file is never created here), and the summary comes from DBOS either way."""
    if sqlite_file_missing(settings.app_db):
        return None
    try:
        with engine.connect() as conn:
            return batch_records.batch_progress(conn, batch_id)
    except sa.exc.DBAPIError:  # no tables yet, or the database is away for a moment
        return None


def _timed_out(batch_id: str, seen: Seen, timeout: float) -> str:
    message = f"gave up waiting after {timeout:g} s: batch {batch_id} is {seen.status or 'unknown'}"
    if seen.messages:
        message += f", {seen.published} of {seen.messages} messages published"
    if seen.status == "ENQUEUED":
        message += " (no service has picked it up)"
    return message + "; it goes on durably: wait again with the same --batch-id"


class RateColumn(ProgressColumn):
    """Messages per second, over rich's recent samples."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f} msg/s" if task.speed else "- msg/s")


@contextmanager
def _live_line(
    batch_id: str, count: int, *, enabled: bool
) -> Iterator[Callable[[Seen, float], None]]:
    """A live line on stderr (published of total, msg/s, ETA); nothing when not `enabled`."""
    if not enabled:
        yield lambda _seen, _waited: None
        return
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        RateColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    task = progress.add_task(f"batch {batch_id}", total=count)
    with progress:
        yield lambda seen, waited: _show(progress, task, batch_id, seen, waited)


def queue_note(status: str | None, waited: float) -> str:
    """What the live line says of a batch still queued: only after HINT_AFTER_SEC that no
    service seems to be running (a running one polls its queue about once a second)."""
    if status != "ENQUEUED":
        return ""
    return " (waiting for a service)" if waited >= HINT_AFTER_SEC else " (queued)"


def _show(progress: Progress, task: TaskID, batch_id: str, seen: Seen, waited: float) -> None:
    waiting = queue_note(seen.status, waited)
    progress.update(
        task,
        completed=seen.published,
        total=seen.messages or progress.tasks[0].total,
        description=f"batch {batch_id}{waiting}",
    )
