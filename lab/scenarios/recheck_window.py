"""Lab variant for `broken/freeze-recheck-window`: workers that re-check a taken-over executor
for PENDING work during 3 lease TTLs after its takeover only (RECHECK_TTLS, the release before
issue 20), instead of recovering ownerless PENDING work at every sweep. A worker frozen inside a
dequeue past that window commits it when it thaws: its chunks turn PENDING under its executor,
it exits (lease lost), and nobody recovers them. Shows `fleet/freeze` catches the window. The
freeze trap is installed as in `fleet/freeze`. Never run it for real."""

from __future__ import annotations

import time
from dataclasses import dataclass

import structlog

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers.fleet._workers import Worker
from dbos_publishers.store import _leases as leases
from lab.scenarios import freeze_trap

log = structlog.get_logger()

RECHECK_TTLS = 3.0


@dataclass(frozen=True)
class Recheck:
    executor_id: str
    takeover_id: int
    until: float  # time.monotonic()


_rechecks: list[Recheck] = []  # one Worker per service process
_recover_one = Worker._recover_one


def recover_one_and_recheck(self: Worker, executor_id: str, takeover_id: int) -> int:
    """The takeover's recovery, then a re-check window for that executor."""
    recovered = _recover_one(self, executor_id, takeover_id)
    if executor_id != self.me.executor_id:
        until = time.monotonic() + RECHECK_TTLS * self.settings.leases.ttl_sec
        _rechecks.append(Recheck(executor_id, takeover_id, until))
    return recovered


def recheck(self: Worker, alive_executors: set[str]) -> int:
    """The old sweep: recover again, for a while, only the executors this worker took over."""
    now = time.monotonic()
    _rechecks[:] = [r for r in _rechecks if r.until > now]
    total = 0
    for check in _rechecks:
        if check.executor_id in alive_executors:
            continue
        late = dbos_gateway.recover_executor(check.executor_id)
        if late:
            with self.engine.begin() as conn:
                leases.record_recovered(conn, check.takeover_id, late)
            log.warning("worker_late_work_recovered", executor_id=check.executor_id, workflows=late)
            total += len(late)
    return total


if __name__ == "__main__":
    Worker._recover_one = recover_one_and_recheck  # type: ignore[method-assign]
    Worker.recover_ownerless = recheck  # type: ignore[method-assign]
    freeze_trap.install()
    freeze_trap.serve()
