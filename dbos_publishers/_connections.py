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


def idle_in_transaction_sec(leases: LeaseSettings) -> float:
    """How long a chunk transaction's session may sit idle inside its transaction: half the lease
    TTL. Postgres then ends it, so a worker frozen, hung or cut off mid-chunk (holding its counter
    rows, with every chunk of those topics on every worker waiting behind it) never holds them
    past its lease; DBOS's datasource runs the lost attempt again on a fresh connection (SQLSTATE
    25P03), or a survivor does after a takeover. No client-side TCP keepalives: a link that stalls
    then ends a statement as "connection timed out", which DBOS 3.4 does not retry (measured:
    pg/chaos --seed 7 ended a batch ERROR with them)."""
    return leases.ttl_sec / 2


def chunk_connect_args(leases: LeaseSettings, executor_id: str) -> dict[str, object]:
    """libpq settings of the chunk transactions' connections: the bound above, and a name that
    says whose they are in pg_stat_activity."""
    idle_ms = round(idle_in_transaction_sec(leases) * 1000)
    return {
        "options": f"-c idle_in_transaction_session_timeout={idle_ms}",
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
