"""alembic on SQLite and Postgres: upgrade, downgrade, no drift, DBOS's tables left alone."""

from __future__ import annotations

import subprocess
import sys

import sqlalchemy as sa
from dbos._datasource_migration import migrate_datasource_database

from app import migrate
from app.config import DatabaseUrl
from app.database import short_lived_engine
from tests.helpers import ROOT, Databases

APP_TABLES = {"ledger", "local_counters", "global_counters"}


def _alembic(databases: Databases, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "APP_DATABASE_URL": databases.app_url},
        capture_output=True,
        text=True,
        check=False,
    )


def _tables(url: DatabaseUrl) -> set[str]:
    with short_lived_engine(url) as engine:
        return set(sa.inspect(engine).get_table_names())


def test_upgrade_downgrade_upgrade(databases: Databases) -> None:
    url = DatabaseUrl.parse(databases.app_url, "APP_DATABASE_URL")
    migrate.upgrade(url)
    assert _tables(url) >= APP_TABLES
    down = _alembic(databases, "downgrade", "base")
    assert down.returncode == 0, down.stderr
    assert not APP_TABLES & _tables(url)
    up = _alembic(databases, "upgrade", "head")
    assert up.returncode == 0, up.stderr
    assert _tables(url) >= APP_TABLES


def test_alembic_check_sees_no_drift_and_ignores_dbos_tables(databases: Databases) -> None:
    url = DatabaseUrl.parse(databases.app_url, "APP_DATABASE_URL")
    migrate.upgrade(url)
    migrate_datasource_database(
        databases.app_url, None if url.backend == "sqlite" else "dbos", None
    )
    done = _alembic(databases, "check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No new upgrade operations detected" in done.stdout


def test_alembic_check_reports_drift(databases: Databases) -> None:
    url = DatabaseUrl.parse(databases.app_url, "APP_DATABASE_URL")
    migrate.upgrade(url)
    with short_lived_engine(url) as engine, engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE ledger ADD COLUMN stray INTEGER"))
    done = _alembic(databases, "check")
    assert done.returncode != 0
    assert "stray" in done.stdout + done.stderr
