"""alembic on SQLite and Postgres: upgrade, downgrade, no drift, DBOS's tables left alone.

alembic's command line runs in this process (`alembic.config.main`), reading alembic.ini and
migrations/env.py as `alembic` from a shell does; one smoke test runs the real `alembic`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

import psycopg
import pytest
import sqlalchemy as sa
from alembic.config import CommandLine, Config
from dbos import DBOS

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers import _migrate as migrate
from dbos_publishers._config import DatabaseUrl
from dbos_publishers.store import _views as views
from dbos_publishers.store._database import short_lived_engine
from lab.scratch import scratch_databases
from tests.helpers import ROOT, Databases, InProcessCli, dbos_migrate

APP_TABLES = {"ledger", "local_counters", "global_counters"}


def _alembic_main(argv: Sequence[str]) -> None:
    """alembic's own `main`, but printing to the stdout of the moment, which the test captures
    (`Config` binds its default stdout when alembic is imported)."""
    command_line = CommandLine(prog="alembic")
    options = command_line.parser.parse_args(argv)
    config = Config(str(ROOT / "alembic.ini"), cmd_opts=options, stdout=sys.stdout)
    command_line.run_cmd(config, options)


@pytest.fixture
def alembic(databases: Databases, capfd: pytest.CaptureFixture[str]) -> InProcessCli:
    """`alembic ARGS` from the project root against the test's application database."""
    env = {"APP_DATABASE_URL": databases.app_url}
    return InProcessCli(capture=capfd, cwd=ROOT, env=env, main=_alembic_main)


def _tables(url: DatabaseUrl) -> set[str]:
    with short_lived_engine(url) as engine:
        return set(sa.inspect(engine).get_table_names())


def test_upgrade_downgrade_upgrade(databases: Databases, alembic: InProcessCli) -> None:
    url = DatabaseUrl.parse(databases.app_url, "APP_DATABASE_URL")
    migrate.upgrade(url)
    assert _tables(url) >= APP_TABLES
    down = alembic("downgrade", "base")
    assert down.returncode == 0, down.stderr
    assert not APP_TABLES & _tables(url)
    up = alembic("upgrade", "head")
    assert up.returncode == 0, up.stderr
    assert _tables(url) >= APP_TABLES


def test_alembic_check_sees_no_drift_and_ignores_dbos_tables(
    databases: Databases, alembic: InProcessCli
) -> None:
    url = DatabaseUrl.parse(databases.app_url, "APP_DATABASE_URL")
    migrate.upgrade(url)
    dbos_gateway.migrate_datasource_tables(url)
    done = alembic("check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No new upgrade operations detected" in done.stdout


def test_alembic_check_reports_drift(databases: Databases, alembic: InProcessCli) -> None:
    url = DatabaseUrl.parse(databases.app_url, "APP_DATABASE_URL")
    migrate.upgrade(url)
    with short_lived_engine(url) as engine, engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE ledger ADD COLUMN stray INTEGER"))
    done = alembic("check")
    assert done.returncode != 0
    assert "stray" in done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"])  # the process, not the backend, is the point
def test_the_real_alembic_command_sees_no_drift(databases: Databases) -> None:
    """From a shell, with only APP_DATABASE_URL set: alembic.ini puts the project on sys.path."""
    migrate.upgrade(DatabaseUrl.parse(databases.app_url, "APP_DATABASE_URL"))
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "check"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "APP_DATABASE_URL": databases.app_url},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Only its answer: alembic's INFO records ("Context impl ...") stay at WARNING.
    assert (done.stdout, done.stderr) == ("No new upgrade operations detected.\n", "")


@pytest.mark.postgres
def test_a_database_name_is_quoted_never_run_as_sql(postgres_server: str) -> None:
    """A name with a quote and a clause in it creates a database of exactly that name."""
    name = f'pubtest_inj_{os.getpid()}" TEMPLATE "template0'
    url = sa.make_url(postgres_server).set(database=name).render_as_string(False)
    migrate.ensure_database(DatabaseUrl.parse(url, "APP_DATABASE_URL"))
    admin = sa.create_engine(
        postgres_server, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
    )
    try:
        with admin.connect() as conn:
            found = conn.scalar(
                sa.text("SELECT datname FROM pg_database WHERE datname = :n"), {"n": name}
            )
            assert found == name
            quoted = conn.dialect.identifier_preparer.quote_identifier(name)
            conn.execute(sa.text(f"DROP DATABASE {quoted}"))
    finally:
        admin.dispose()


HOSTILE_NAMES = ['rel_inj" TEMPLATE "template0', 'one"quote', "semi; DROP DATABASE postgres; --"]


def _exists(postgres_server: str, name: str) -> bool:
    with psycopg.connect(postgres_server) as admin:
        found = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        return found.fetchone() is not None


@pytest.mark.postgres
@pytest.mark.parametrize("hostile", HOSTILE_NAMES)
def test_a_hostile_scratch_database_is_created_migrated_and_dropped_by_its_name(
    postgres_server: str, hostile: str
) -> None:
    """What the lab and the benchmark do: CREATE, both migrations, DROP, each naming exactly the
    database (never "unterminated quoted identifier", never another statement)."""
    prefix = f"pubtest_{os.getpid()}_{hostile}"  # the next run drops a copy a crash left
    with scratch_databases("postgresql", postgres_server, prefix) as (system_db, app_db):
        name = str(app_db.sqlalchemy_url.database)
        assert name.startswith(prefix) and _exists(postgres_server, name)
        DBOS.migrate(system_db.raw)
        migrate.upgrade(app_db)
        assert _tables(app_db) >= APP_TABLES
    assert not _exists(postgres_server, name)
    assert _exists(postgres_server, "postgres")


@pytest.mark.parametrize("backend", ["sqlite"])  # the settings, not the backend, are the point
@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"APP_LOG_LEVEL": "loud"}, "APP_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR"),
        ({"APP_DATABASE_URL": "mysql://u@h/db"}, "APP_DATABASE_URL: unsupported scheme"),
        (
            {"APP_DATABASE_URL": "postgresql://u:s3cret-pw@127.0.0.1:1/far"},
            "cannot migrate postgresql database 'far' on 127.0.0.1:1 (APP_DATABASE_URL)",
        ),
    ],
)
def test_alembic_from_a_shell_refuses_bad_settings_in_one_line(
    alembic: InProcessCli, env: dict[str, str], fragment: str
) -> None:
    """What `dbos migrate` runs: one line and exit 2, never a traceback or a password."""
    done = alembic("upgrade", "head", **env)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if not line.startswith("{")]  # logs: JSON
    assert len(errors) == 1 and errors[0].startswith("error: "), done.stderr
    assert fragment in errors[0]
    assert "s3cret-pw" not in done.stdout + done.stderr


@pytest.mark.slow  # the real `dbos migrate` in a subprocess
@pytest.mark.postgres
def test_views_joining_dbos_appear_when_alembic_ran_before_dbos_migrate(
    postgres_server: str,
) -> None:
    """`alembic upgrade head` first cannot create the views that join DBOS's tables (they are not
    there yet); the `dbos migrate` after it creates them, though alembic is already at head."""
    with scratch_databases("postgresql", postgres_server, f"pubtest_{os.getpid()}_order") as (
        _,
        db,
    ):
        migrate.upgrade(db)
        assert _views(db) & set(views.JOINING_DBOS) == set()
        done = dbos_migrate(db.raw)
        assert done.returncode == 0, done.stderr
        assert _views(db) >= set(views.JOINING_DBOS)
        again = dbos_migrate(db.raw)  # all there: nothing created, nothing refused
        assert again.returncode == 0 and "views_created" not in again.stdout + again.stderr


def _views(url: DatabaseUrl) -> set[str]:
    with short_lived_engine(url) as engine, engine.connect() as conn:
        return set(sa.inspect(conn).get_view_names())
