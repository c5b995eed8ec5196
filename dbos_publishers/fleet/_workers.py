"""A worker process's life on a shared database: a unique executor id, a lease it heartbeats, a
clean stop, and the takeover of workers that are gone, coordinated through the database alone.

Open-source DBOS recovers only its own executor's PENDING work at launch; a worker that died for
good would strand its work. Here every worker sweeps for gone workers of its own application
version, exactly one survivor claims each (a guarded UPDATE, see store._leases), and recovers
that executor's pending work through DBOS's recovery.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
import structlog

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers._config import Settings
from dbos_publishers._errors import StateError
from dbos_publishers.store import _counters as counters
from dbos_publishers.store import _leases as leases
from dbos_publishers.store._database import (
    connection_failure,
    make_engine,
    wait_for_locks_at_most,
)
from dbos_publishers.store._leases import ClaimReason, TakeoverRow, WorkerIdentity, WorkerRow

log = structlog.get_logger()

EXIT_LEASE_LOST = 3  # a worker that finds itself taken over stops at once
# Work can turn PENDING under an executor after its takeover recovered it: a worker killed just
# after sending a COMMIT (a dequeue: ENQUEUED -> PENDING under its executor id) is gone from /proc
# before its session applied it; a worker frozen inside a dequeue commits it when it thaws, any
# time later, then finds its lease lost and exits. So every sweep, by every worker, recovers the
# PENDING work of every taken-over executor that is not alive again, however late it appears
# (no time window: one was seen to strand a frozen worker's chunks for good).
DEAD_STATES = frozenset({"Z", "X"})  # zombie, dead: /proc still lists them
# How long a starting worker waits for a twin on its host to finish stopping: a service stops in
# about 2 s, DBOS.destroy() waits up to 10 s for running work, and the lease is marked last.
PREDECESSOR_WAIT_SEC = 30.0
PREDECESSOR_POLL_SEC = 0.1
# A clean stop waits at most this long for the lease thread and for the lock its `stopped` mark
# needs; if it cannot mark the lease, the lease expires instead (the work is taken over later).
LEAVE_WAIT_SEC = 1.0


class WorkerRefusedError(StateError):
    """This worker must not run next to one that is alive (SQLite, or the same executor id)."""


@dataclass(frozen=True)
class Claim:
    takeover_id: int
    worker: WorkerRow
    reason: ClaimReason
    inherited: tuple[TakeoverRow, ...] = ()  # claims the gone worker made but never recovered


def default_executor_id() -> str:
    """Unique per process and stable for its life: host and pid."""
    return f"{socket.gethostname()}-{os.getpid()}"


def process_token(pid: int) -> str | None:
    """Boot id, pid and start time of a running process (None when it is not running), so a pid
    reused after a restart or a reboot is not mistaken for the old process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except (OSError, IndexError):
        return None
    if stat[0] in DEAD_STATES:  # killed, not yet reaped by its parent: not running
        return None
    return f"{boot_id}:{pid}:{stat[19]}"  # field 22 of stat: start time in clock ticks


def identity(settings: Settings) -> WorkerIdentity:
    pid = os.getpid()
    return WorkerIdentity(
        worker_id=uuid.uuid4().hex,
        executor_id=settings.executor_id or default_executor_id(),
        app_version=settings.application_version,
        host=socket.gethostname(),
        pid=pid,
        process_token=process_token(pid) or f"unknown:{pid}",
        lease_ttl_sec=settings.leases.ttl_sec,
    )


@dataclass
class Worker:
    settings: Settings
    me: WorkerIdentity
    engine: sa.Engine = field(init=False)
    takeovers: int = 0
    _owed: list[Claim] = field(default_factory=list)  # claimed, recovery failed: retried
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    on_outage: Callable[[str], None] | None = None  # told when a heartbeat cannot connect
    # Since when this worker's heartbeats have got through (None: the last one failed). Others'
    # leases lapse in an outage too: none is judged expired before this worker has been back
    # for a whole TTL, so their heartbeats have had the time to renew them.
    _reachable_since: float | None = float("-inf")  # joining connected: reachable till now

    def __post_init__(self) -> None:
        extra = (
            {} if self.settings.app_db.backend == "sqlite" else {"pool_size": 1, "max_overflow": 0}
        )
        self.engine = make_engine(self.settings.app_db, pool_pre_ping=True, **extra)

    # ---- joining and leaving --------------------------------------------------------------

    def join(self) -> list[Claim]:
        """Before DBOS.launch(): refuse to run beside what must not run twice, announce this
        worker, and claim the workers that are gone (their work is recovered after launch)."""
        self._wait_for_predecessor()
        with self.engine.begin() as conn:
            rows = leases.list_workers(conn, leases.CLAIMABLE)
            self._refuse(rows)
            leases.register(conn, self.me)
            names = [d.name for d in self.settings.publishers]
            leases.declare_publishers(conn, self.me.worker_id, names)
        log.info("worker_joined", executor_id=self.me.executor_id, worker_id=self.me.worker_id)
        return self._claim_gone(rows)

    def leave(self) -> None:
        """A clean stop: no more heartbeats, and the lease marked stopped so the others take
        over anything unfinished at once instead of after the TTL."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=LEAVE_WAIT_SEC)
        with contextlib.suppress(sa.exc.DBAPIError), self.engine.begin() as conn:
            wait_for_locks_at_most(conn, LEAVE_WAIT_SEC)  # a hung chunk may hold SQLite's lock
            leases.stop(conn, self.me.worker_id)
        self.engine.dispose()
        log.info("worker_left", executor_id=self.me.executor_id)

    def _twins(self, rows: list[WorkerRow]) -> list[WorkerRow]:
        """Live workers this one must not run beside: any on SQLite, its executor id on Postgres."""
        live = [r for r in rows if r.state == "alive" and self.gone_reason(r) is None]
        if self.settings.system_db.backend == "sqlite":
            return live
        return [r for r in live if r.executor_id == self.me.executor_id]

    def _refuse(self, rows: list[WorkerRow]) -> None:
        twins = self._twins(rows)
        if not twins:
            return
        other = twins[0]
        if self.settings.system_db.backend == "sqlite":
            raise WorkerRefusedError(
                f"another worker is running on this SQLite database (executor {other.executor_id}, "
                f"pid {other.pid} on {other.host}); SQLite takes one worker: run several "
                "workers on Postgres"
            )
        raise WorkerRefusedError(
            f"executor id {other.executor_id!r} belongs to a live worker (pid {other.pid} "
            f"on {other.host}, heartbeat {other.heartbeat_age:.1f} s ago); give each "
            "worker its own APP_EXECUTOR_ID"
        )

    def _wait_for_predecessor(self) -> None:
        """A supervisor may start this process while the one it replaces is still stopping
        (`dbos start` exits at once on SIGTERM, about 2 s before its service has): wait up to
        PREDECESSOR_WAIT_SEC for twins on this host to exit instead of refusing to run. A twin
        on another host, or one still running at the deadline, is refused by `_refuse`."""
        deadline = time.monotonic() + PREDECESSOR_WAIT_SEC
        waited = False
        while time.monotonic() < deadline:
            with self.engine.connect() as conn:
                twins = self._twins(leases.list_workers(conn, leases.CLAIMABLE))
            local = [r for r in twins if r.host == self.me.host and r.pid != self.me.pid]
            if not local or len(local) < len(twins):
                return
            if not waited:
                log.info(
                    "waiting_for_predecessor", executor_id=local[0].executor_id, pid=local[0].pid
                )
                waited = True
            time.sleep(PREDECESSOR_POLL_SEC)

    # ---- takeover -------------------------------------------------------------------------

    def gone_reason(self, row: WorkerRow) -> ClaimReason | None:
        """Why `row`'s worker is gone, or None while it may still be running."""
        if row.state == "stopped":
            return "stopped"
        if row.host == self.me.host and process_token(row.pid) != row.process_token:
            return "exited"  # on this machine, and its process is not running
        if row.expired and self._back_for_a_ttl():
            return "expired"
        return None

    def _back_for_a_ttl(self) -> bool:
        since = self._reachable_since
        return since is not None and time.monotonic() - since >= self.settings.leases.ttl_sec

    def _claim_gone(self, rows: list[WorkerRow]) -> list[Claim]:
        claims = []
        for row in rows:
            reason = self.gone_reason(row) if self._may_claim(row) else None
            if reason is None:
                continue
            with self.engine.begin() as conn:
                takeover_id = leases.claim(conn, row, self.me, reason)
                inherited = (
                    () if takeover_id is None else leases.unfinished_takeovers(conn, row.worker_id)
                )
            if takeover_id is not None:
                claims.append(Claim(takeover_id, row, reason, tuple(inherited)))
        return claims

    def _may_claim(self, row: WorkerRow) -> bool:
        # Work of another application version is never taken over: this code may not match it.
        return (
            row.worker_id != self.me.worker_id
            and row.state in leases.CLAIMABLE
            and row.app_version == self.me.app_version
        )

    def recover(self, claims: list[Claim]) -> int:
        """After DBOS.launch(): recover each claimed executor's pending workflows; returns how
        many. This worker's own executor id DBOS recovered at launch already. A claim whose
        recovery fails is owed, and retried at the next heartbeat: a claim is never dropped."""
        owed, self._owed = [*self._owed, *claims], []
        total = 0
        for claim in owed:
            try:
                total += self._recover_claim(claim)
            except Exception:  # any failure: keep the claim and retry it
                log.exception("worker_takeover_failed", executor_id=claim.worker.executor_id)
                self._owed.append(claim)
        return total

    def _recover_claim(self, claim: Claim) -> int:
        gone = claim.worker
        # Inherited first: the claim's own record, written last, marks the whole claim done.
        inherited = sum(self._recover_one(t.executor_id, t.takeover_id) for t in claim.inherited)
        recovered = self._recover_one(gone.executor_id, claim.takeover_id)
        # A clean stop handed its work over on purpose: adopted, not a takeover of a dead worker.
        adopted = claim.reason == "stopped"
        self.takeovers += 0 if adopted else 1
        log.info(
            "worker_adopted" if adopted else "worker_taken_over",
            executor_id=gone.executor_id,
            worker_id=gone.worker_id,
            reason=claim.reason,
            workflows=recovered,
            by_executor_id=self.me.executor_id,
            inherited=[earlier.executor_id for earlier in claim.inherited],
        )
        return inherited + recovered

    def _recover_one(self, executor_id: str, takeover_id: int) -> int:
        """Re-enqueue one gone executor's PENDING workflows (idempotent: DBOS re-enqueues only
        rows still PENDING under that executor id) and record how many."""
        recovered = (
            [] if executor_id == self.me.executor_id else dbos_gateway.recover_executor(executor_id)
        )
        with self.engine.begin() as conn:
            leases.record_recovered(conn, takeover_id, recovered)
        return len(recovered)

    def recover_ownerless(self, alive_executors: set[str]) -> int:
        """Recover the PENDING work (of this version) of executors that were taken over and are
        not alive again (never one a live worker has since taken: an executor id reused by a
        restarted container), whenever it appears; every worker does, at every sweep: DBOS's
        re-enqueue is a guarded UPDATE, so two survivors never recover one workflow twice."""
        pending = dbos_gateway.pending_executors(self.me.app_version)
        ownerless = pending - alive_executors - {self.me.executor_id}
        if not ownerless:
            return 0
        with self.engine.connect() as conn:
            taken = leases.latest_takeovers(conn, ownerless)
        total = 0
        for executor_id, takeover_id in taken.items():
            late = dbos_gateway.recover_executor(executor_id)
            if late:
                with self.engine.begin() as conn:
                    leases.record_recovered(conn, takeover_id, late)
                log.warning("worker_late_work_recovered", executor_id=executor_id, workflows=late)
                total += len(late)
        return total

    # ---- the lease ------------------------------------------------------------------------

    def heartbeat_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._run, name="worker-lease", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.leases.heartbeat_sec):
            try:
                self._beat()
                if self._reachable_since is None:
                    self._reachable_since = time.monotonic()
                rows = self._sweep_rows()
                self.recover(self._claim_gone(rows))
                self.recover_ownerless({r.executor_id for r in rows if r.state == "alive"})
                self.fold_counters()
            except sa.exc.DBAPIError as exc:  # an outage: the lease may lapse, never silently
                self._beat_failed(exc)
            except Exception:  # the lease thread must outlive any one sweep
                log.exception("worker_sweep_failed")

    def fold_counters(self) -> int:
        """Fold the chunks' counter deltas into the counter rows (store._counters); a fold that
        fails is only late, never wrong: the deltas stay and every read still adds them."""
        try:
            with self.engine.begin() as conn:
                return counters.fold_deltas(conn)
        except sa.exc.DBAPIError as exc:
            log.warning("counter_fold_failed", error=str(exc.orig or exc).splitlines()[0])
            return 0

    def _beat_failed(self, exc: sa.exc.DBAPIError) -> None:
        self._reachable_since = None
        reason = connection_failure(exc)
        if reason is not None and self.on_outage is not None:
            self.on_outage(reason)  # the watchdog tells an outage once, not once per heartbeat
        else:
            log.warning("worker_heartbeat_failed", error=str(exc.orig or exc).splitlines()[0])

    def _beat(self) -> None:
        with self.engine.begin() as conn:
            alive = leases.heartbeat(conn, self.me.worker_id)
        if not alive and not self._stop.is_set():
            # Another worker took this one over while it was paused or cut off; its in-flight
            # work now runs there. Stop at once: DBOS parks anything of ours that still writes.
            log.error("worker_lease_lost", executor_id=self.me.executor_id)
            os._exit(EXIT_LEASE_LOST)

    def _sweep_rows(self) -> list[WorkerRow]:
        with self.engine.connect() as conn:
            return leases.list_workers(conn, leases.CLAIMABLE)
