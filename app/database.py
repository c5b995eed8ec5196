"""Engines for the two databases and a reachability check whose errors never show a password."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from app.config import ConfigError, DatabaseUrl

CONNECT_TIMEOUT_SEC = 5


class UnreachableDatabaseError(ConfigError):
    """The database cannot be reached; the message names host and database, never the password."""


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
    """Connect once; raise UnreachableDatabaseError with a one-line, password-free reason."""
    with reported(url, "cannot reach"), short_lived_engine(url) as engine, engine.connect():
        pass


@contextmanager
def reported(url: DatabaseUrl, doing: str) -> Iterator[None]:
    """Turn a driver error into one line naming the database (never its password)."""
    try:
        yield
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        password = url.sqlalchemy_url.password
        if password:
            reason = reason.replace(str(password), "***")
        raise UnreachableDatabaseError(f"{doing} {url.safe} ({url.label}): {reason}") from None


def system_tables_exist(system_db: DatabaseUrl) -> bool:
    schema = None if system_db.backend == "sqlite" else "dbos"
    with short_lived_engine(system_db) as engine:
        return sa.inspect(engine).has_table("workflow_status", schema=schema)


def app_tables_exist(app_db: DatabaseUrl) -> bool:
    with short_lived_engine(app_db) as engine:
        return sa.inspect(engine).has_table("ledger")
