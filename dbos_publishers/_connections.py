"""A worker's connection budget: how the `[workers] connections` it may hold are shared among
DBOS's system-database pool, the chunk transactions' datasource pool, the lease and the API.

The split is fixed arithmetic, checked before anything connects: a budget too small for the
configured chunk concurrency is refused at start, never discovered as a wait for a connection
in the middle of a batch. No DBOS import; `runtime` and `api` apply the plan.
"""

from __future__ import annotations

from dataclasses import dataclass

from dbos_publishers._config import ConfigError, LeaseSettings, Settings

LEASE = 1  # the worker's own heartbeat and sweeps
LISTENER = 1  # DBOS's LISTEN connection on a Postgres system database
API_CLIENT = 2  # the service's DBOS client (dbos_publishers._dbos_gateway.CLIENT_POOL_SIZE)
API_READERS = 2  # HTTP requests reading the databases at once; more wait, then get a 503
CONNECTIONS_PER_READER = 2  # a read holds at most an app connection and a client's
MIN_SYSTEM = 3  # DBOS: queue polling, the recovery thread, one workflow's steps
SYSTEM_SPARE = 2  # beyond one per workflow this worker may run at once
# How a chunk transaction's session names itself in pg_stat_activity, before its executor id.
CHUNK_APPLICATION_NAME = "dbos-publishers chunk"
FIXED = LEASE + LISTENER + API_CLIENT + API_READERS * CONNECTIONS_PER_READER


@dataclass(frozen=True)
class ConnectionPlan:
    budget: int
    system: int  # DBOS's system-database pool (sys_db_pool_size)
    datasource: int  # the chunk transactions' pool: one per chunk running at once, plus one
    fixed: int = FIXED

    @property
    def total(self) -> int:
        return self.system + self.datasource + self.fixed


@dataclass(frozen=True)
class TransactionBounds:
    """What Postgres enforces on a chunk transaction's session, all derived from the lease TTL so
    they stay one coherent set: no chunk transaction outlives its worker's lease.

    - idle in a transaction: half the TTL. A worker frozen, hung or cut off mid-chunk loses its
      session and its locks; DBOS's datasource runs the attempt again (SQLSTATE 25P03).
    - a lock wait: half the TTL, so a chunk never queues behind a stalled holder for longer than
      the holder itself may stall; the attempt is retried as the next step (55P03).
    - a statement: the whole TTL, generous for the COPY of a chunk; retried the same way (57014).
    - server-side TCP keepalives: a partitioned client's session is reaped within about the TTL.
      No client-side keepalives: a stalled link then ends a statement as "connection timed out",
      which DBOS 3.4 does not retry (pg/chaos --seed 7 ended a batch ERROR with them).
    """

    idle_in_transaction_ms: int
    lock_ms: int
    statement_ms: int
    keepalive_idle_sec: int
    keepalive_interval_sec: int
    keepalive_count: int = 3

    def settings(self) -> dict[str, int]:
        """Each server setting in its base unit (ms, s), as `pg_settings.setting` reads it back."""
        return {
            "idle_in_transaction_session_timeout": self.idle_in_transaction_ms,
            "lock_timeout": self.lock_ms,
            "statement_timeout": self.statement_ms,
            "tcp_keepalives_idle": self.keepalive_idle_sec,
            "tcp_keepalives_interval": self.keepalive_interval_sec,
            "tcp_keepalives_count": self.keepalive_count,
        }


def transaction_bounds(leases: LeaseSettings) -> TransactionBounds:
    ttl = leases.ttl_sec
    return TransactionBounds(
        idle_in_transaction_ms=round(ttl * 500),
        lock_ms=round(ttl * 500),
        statement_ms=round(ttl * 1000),
        keepalive_idle_sec=max(1, round(ttl / 2)),
        keepalive_interval_sec=max(1, round(ttl / 6)),
    )


def bounds_not_applied(asked: TransactionBounds, found: dict[str, int]) -> str | None:
    """Why the chunk connections do not run with the bounds asked (a connection pooler in
    transaction mode drops startup options), in one sentence; None when they do."""
    wrong = [
        f"{name}={found[name]} (asked {value})"
        for name, value in asked.settings().items()
        if name in found and found[name] != value
    ]
    if not wrong:
        return None
    return (
        f"the chunk transactions' connections run with {', '.join(wrong)}: without these bounds a "
        "stalled worker's transaction outlives its lease; connect APP_DATABASE_URL directly "
        "(not through a pooler in transaction mode) or let its role take startup options"
    )


def chunk_connect_args(leases: LeaseSettings, executor_id: str) -> dict[str, object]:
    """libpq settings of the chunk transactions' connections: the bounds above, and a name that
    says whose they are in pg_stat_activity."""
    bounds = transaction_bounds(leases).settings()
    return {
        "options": " ".join(f"-c {name}={value}" for name, value in bounds.items()),
        "application_name": f"{CHUNK_APPLICATION_NAME} {executor_id}"[:63],
    }


def datasource_pool(settings: Settings) -> int:
    """One connection per chunk transaction running at once, plus one."""
    return settings.queues.chunk_concurrency + 1


def minimum(settings: Settings) -> int:
    return FIXED + datasource_pool(settings) + MIN_SYSTEM


def plan(settings: Settings) -> ConnectionPlan:
    """Share the budget: the datasource gets what the chunk concurrency needs (a chunk waiting
    for a connection would hold its workflow open), DBOS's pool the rest, up to what it can use."""
    budget = settings.connections
    datasource = datasource_pool(settings)
    if budget < minimum(settings):
        raise ConfigError(
            f"[workers] connections = {budget} is too few for chunk_concurrency "
            f"{settings.queues.chunk_concurrency}: a worker needs at least {minimum(settings)} "
            f"({FIXED} for the lease, the listener and the API, {datasource} for chunk "
            f"transactions, {MIN_SYSTEM} for DBOS); raise connections (APP_CONNECTIONS) or "
            "lower [queues] chunk_concurrency"
        )
    useful = settings.queues.chunk_workflows + settings.queues.batch_concurrency + SYSTEM_SPARE
    system = min(useful, budget - FIXED - datasource)
    return ConnectionPlan(budget=budget, system=system, datasource=datasource)
