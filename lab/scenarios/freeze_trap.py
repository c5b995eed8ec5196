"""Lab serve wrapper for `fleet/freeze`: the service with a trap that freezes it (SIGSTOP to its
own process, every thread at once) inside a dequeue: after DBOS's UPDATE turned queued chunk
workflows PENDING under this executor and before that transaction commits. From outside such a
moment is a few milliseconds wide; the audit's stranded chunks needed exactly it. The trap is
armed by a file the lab creates in the service's working directory and fires once. Inert
otherwise; never run it for real."""

from __future__ import annotations

import runpy
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog

log = structlog.get_logger()

TRIGGER = "freeze-in-dequeue"  # the file that arms the trap, in the working directory
_DEQUEUED = "lab_dequeued"  # connection info key: this transaction claimed queued workflows


def _is_dequeue(statement: str) -> bool:
    """DBOS 3.4's claim of queued workflows (sys_db start_queued_workflows and its partitioned
    twin): the only UPDATE of workflow_status that stamps both owner_xid and started_at."""
    head = statement.lstrip()[:40].upper()
    return head.startswith("UPDATE") and all(
        word in statement for word in ("workflow_status", "owner_xid", "started_at_epoch_ms")
    )


def _after_execute(conn: sa.Connection, cursor: Any, statement: str, *_rest: object) -> None:
    if _is_dequeue(statement) and cursor.rowcount > 0 and Path(TRIGGER).exists():
        conn.info[_DEQUEUED] = True


def _before_commit(conn: sa.Connection) -> None:
    if conn.info.pop(_DEQUEUED, False):
        Path(TRIGGER).unlink(missing_ok=True)
        log.warning("lab_frozen_in_dequeue")
        sys.stdout.flush()
        # Sent to this thread, so it stops on its way out of the call, before the COMMIT (sent
        # to the process, another thread took it, and this one was seen to commit first).
        # SIGCONT from the lab lets the COMMIT go.
        signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)


def install() -> None:
    sa.event.listen(sa.engine.Engine, "after_cursor_execute", _after_execute)
    sa.event.listen(sa.engine.Engine, "commit", _before_commit)


def serve() -> None:
    """`python -m app serve`, with whatever was installed."""
    sys.argv = ["app", "serve"]
    runpy.run_module("app", run_name="__main__")


if __name__ == "__main__":
    install()
    serve()
