"""Engines for the two databases and a reachability check whose errors never show a password."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from dbos_publishers._config import DatabaseUrl
from dbos_publishers._errors import UnreachableDatabaseError

CONNECT_TIMEOUT_SEC = 5


def make_engine(url: DatabaseUrl, **kwargs: object) -> sa.Engine:
    if url.backend == "postgresql":
        kwargs.setdefault("connect_args", {"connect_timeout": CONNECT_TIMEOUT_SEC})
    return sa.create_engine(url.sqlalchemy_url, **kwargs)


@contextmanager
def short_lived_engine(url: DatabaseUrl) -> Iterator[sa.Engine]:
    engine = make_engine(url, poolclass=sa.pool.NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


def require_reachable(url: DatabaseUrl) -> None:
    """Connect once; raise UnreachableDatabaseError with a one-line, password-free reason.

    A SQLite file that does not exist yet is reachable if its folder is, and is not created
    here: a check that writes nothing leaves nothing behind when the command then fails."""
    if sqlite_file_missing(url):
        folder = Path(str(url.sqlalchemy_url.database)).parent
        if not folder.is_dir():
            raise UnreachableDatabaseError(
                f"cannot reach {url.safe} ({url.label}): no folder {folder}"
            )
        return
    with reported(url, "cannot reach"), short_lived_engine(url) as engine, engine.connect():
        pass


def sqlite_file_missing(url: DatabaseUrl) -> bool:
    return url.backend == "sqlite" and not Path(str(url.sqlalchemy_url.database)).exists()


@contextmanager
def reported(url: DatabaseUrl, doing: str, *, connection_only: bool = False) -> Iterator[None]:
    """Turn a driver error into one line naming the database (never its password); with
    `connection_only`, only a failed connection (see `connection_failure`), others pass through."""
    try:
        yield
    except DBAPIError as exc:
        if connection_only and connection_failure(exc) is None:
            raise
        reason = driver_reason(exc, url)
        if out_of_slots(exc):
            reason += (
                " (no connection slot left: the server's max_connections or the role's "
                "connection limit is reached; each worker holds up to its [workers] "
                "connections, APP_CONNECTIONS)"
            )
        raise UnreachableDatabaseError(f"{doing} {url.safe} ({url.label}): {reason}") from None


def driver_reason(exc: DBAPIError, url: DatabaseUrl | None = None) -> str:
    """The first line of the driver's message, with `url`'s password masked."""
    text = str(exc.orig).strip() if exc.orig is not None else ""
    reason = text.splitlines()[0] if text else type(exc).__name__
    password = url.sqlalchemy_url.password if url is not None else None
    return reason.replace(str(password), "***") if password else reason


def system_tables_exist(system_db: DatabaseUrl) -> bool:
    if sqlite_file_missing(system_db):
        return False
    schema = None if system_db.backend == "sqlite" else "dbos"
    with short_lived_engine(system_db) as engine:
        return sa.inspect(engine).has_table("workflow_status", schema=schema)


def app_tables_exist(app_db: DatabaseUrl) -> bool:
    if sqlite_file_missing(app_db):
        return False
    with short_lived_engine(app_db) as engine:
        return sa.inspect(engine).has_table("ledger")


# SQLSTATE classes of a connection that failed or was refused: 08 connection exception,
# 53 insufficient resources ("too many clients"), 57 operator intervention (shutdown, restart).
CONNECTION_SQLSTATE_CLASSES = ("08", "53", "57")
TOO_MANY_CONNECTIONS = "53300"
# A refused connection carries no SQLSTATE in psycopg (the refusal precedes the session); the
# server's message is all there is.
OUT_OF_SLOTS = ("too many clients", "too many connections", "connection slots are reserved")


def out_of_slots(exc: DBAPIError) -> bool:
    """The server refused a connection because its (or the role's) connection limit is reached."""
    if getattr(exc.orig, "sqlstate", None) == TOO_MANY_CONNECTIONS:
        return True
    return any(marker in str(exc.orig) for marker in OUT_OF_SLOTS)


SQLITE_UNAVAILABLE = ("unable to open database file", "database is locked", "disk I/O error")


def connection_failure(exc: BaseException) -> str | None:
    """One line saying why the database could not be used, when the cause is the connection
    (server down, refused, too many clients, shutting down); None for any other error (a table
    that does not exist yet, a constraint, a bug)."""
    if isinstance(exc, UnreachableDatabaseError):
        return str(exc)
    if not isinstance(exc, DBAPIError) or exc.orig is None:
        return None
    reason = driver_reason(exc)
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if isinstance(exc.orig, psycopg.Error):
        if sqlstate is None or sqlstate[:2] in CONNECTION_SQLSTATE_CLASSES:
            return reason
        return None
    if isinstance(exc.orig, sqlite3.Error) and any(s in reason for s in SQLITE_UNAVAILABLE):
        return reason
    return None


@contextmanager
def read_snapshot(url: DatabaseUrl) -> Iterator[sa.Connection]:
    """A connection whose reads all see one snapshot: one REPEATABLE READ, read-only transaction
    on Postgres (READ COMMITTED would give each statement its own), one deferred transaction on
    SQLite (the driver opens none for a SELECT on its own). Rolled back at the end."""
    with short_lived_engine(url) as engine, engine.connect() as conn:
        if url.backend == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            conn.begin()
        else:
            conn.begin()
            conn.exec_driver_sql("BEGIN DEFERRED")
        try:
            yield conn
        finally:
            conn.rollback()


SESSION_SETTINGS = sa.text("SELECT name, setting FROM pg_settings WHERE name IN :names").bindparams(
    sa.bindparam("names", expanding=True)
)


def session_settings(conn: sa.Connection, names: list[str]) -> dict[str, int]:
    """The session's values of integer server settings, in their base units (Postgres), with
    the TCP keepalives left out on a Unix socket, where the server ignores them."""
    found = {name: int(value) for name, value in conn.execute(SESSION_SETTINGS, {"names": names})}
    if conn.scalar(sa.text("SELECT inet_client_addr() IS NULL")):
        found = {name: value for name, value in found.items() if not name.startswith("tcp_")}
    return found


def wait_for_locks_at_most(conn: sa.Connection, seconds: float) -> None:
    """Bound how long this connection's next statements wait for a lock (SQLite: for the write
    lock, which a hung chunk transaction holds): a stop must not wait on a stuck transaction."""
    ms = max(1, round(seconds * 1000))
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"PRAGMA busy_timeout = {ms:d}")
    else:
        conn.execute(sa.text("SELECT set_config('lock_timeout', :ms, true)"), {"ms": f"{ms}ms"})
