"""Throwaway databases for benchmarks and scenarios: SQLite files in a temporary directory, or a
fresh Postgres database that is dropped afterwards."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from dbos_publishers import _migrate as migrate
from dbos_publishers._config import Backend, DatabaseUrl
from dbos_publishers.store._database import reported, short_lived_engine


@contextmanager
def scratch_databases(
    backend: Backend | str, postgres_url: str, prefix: str
) -> Iterator[tuple[DatabaseUrl, DatabaseUrl]]:
    """(system database, application database); on Postgres both are one new database."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as tmp:
            yield (
                DatabaseUrl.parse(f"sqlite:///{Path(tmp) / 'system.sqlite'}", "system"),
                DatabaseUrl.parse(f"sqlite:///{Path(tmp) / 'app.sqlite'}", "app"),
            )
        return
    admin = DatabaseUrl.parse(postgres_url, "postgres")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    url = DatabaseUrl.parse(admin.sqlalchemy_url.set(database=name).render_as_string(False), "db")
    with reported(admin, "cannot create a scratch database on"):
        migrate.ensure_database(url)
    try:
        yield url, url
    finally:
        with short_lived_engine(admin) as engine, engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(
                sa.text(f"DROP DATABASE IF EXISTS {migrate.quoted(conn, name)} WITH (FORCE)")
            )
