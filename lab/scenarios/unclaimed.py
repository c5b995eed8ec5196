"""Lab variant for `broken/takeover-without-claim`: a worker that takes over gone workers with
no guarded claim, so every survivor recovers every gone executor, again and again. It shows the
scenario's "taken over exactly once" check catches a missing claim. Never run it for real."""

from __future__ import annotations

import runpy
import sys

import sqlalchemy as sa

from dbos_publishers.store import _leases as leases
from dbos_publishers.store._leases import ClaimReason, WorkerIdentity, WorkerRow, db_epoch
from dbos_publishers.store._schema import workers


def claim_without_guard(
    conn: sa.Connection, target: WorkerRow, me: WorkerIdentity, reason: ClaimReason
) -> int | None:
    """What `leases.claim` would be without its guard: the row is taken whatever its state."""
    conn.execute(
        workers.update()
        .where(workers.c.worker_id == target.worker_id)
        .values(state="taken_over", taken_over_by=me.worker_id, taken_over_at=db_epoch())
    )
    return leases.record_takeover(conn, target, me, reason)


if __name__ == "__main__":
    leases.claim = claim_without_guard
    leases.CLAIMABLE = ("alive", "stopped", "taken_over")  # a taken-over worker stays claimable
    sys.argv = ["app", "serve"]
    runpy.run_module("app", run_name="__main__")  # `python -m app serve`, with the above
