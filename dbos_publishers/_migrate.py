"""Application schema migrations (alembic) and the database they need, created on demand."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from dbos import DBOS
from sqlalchemy.exc import DBAPIError

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers._config import DatabaseUrl, Settings
from dbos_publishers.store import _views as views
from dbos_publishers.store._database import (
    make_engine,
    reported,
    require_reachable,
    short_lived_engine,
)

log = structlog.get_logger()

# Tables DBOS's datasource creates in the application database (main schema on SQLite; on
# Postgres they live in the "dbos" schema, which autogenerate never looks at).
DBOS_OWNED_TABLES = frozenset({"datasource_outputs", "dbos_datasource_migrations"})


# A service's own alembic environment, in the working directory as `alembic` itself looks for it:
# the framework's packaged revisions and the service's own. Without one, the packaged environment.
SERVICE_ALEMBIC_INI = Path("alembic.ini")
PACKAGED_ENVIRONMENT = "dbos_publishers:migrations"


def alembic_config(app_db: DatabaseUrl) -> Config:
    if SERVICE_ALEMBIC_INI.is_file():
        config = Config(str(SERVICE_ALEMBIC_INI))
    else:
        config = Config()
        config.set_main_option("script_location", PACKAGED_ENVIRONMENT)
    config.attributes["app_db"] = app_db
    return config


def ensure_database(app_db: DatabaseUrl) -> None:
    """Create the Postgres database if it does not exist (SQLite creates its file itself).

    The database itself is tried first: a role that may connect to its own database only (see
    docs: operations/security, least privilege) never needs the maintenance database."""
    if app_db.backend == "sqlite" or _connects(app_db):
        return
    url = app_db.sqlalchemy_url
    maintenance = DatabaseUrl(url.set(database="postgres").render_as_string(False), app_db.label)
    engine = make_engine(maintenance, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            exists = conn.scalar(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
            )
            if not exists:
                # Quoted as an identifier: a name is data, never SQL (even `x" TEMPLATE "y`).
                conn.execute(sa.text(f"CREATE DATABASE {quoted(conn, str(url.database))}"))
                log.info("database_created", database=app_db.safe)
    finally:
        engine.dispose()


def quoted(conn: sa.Connection, name: str) -> str:
    """A name as a SQL identifier, its quotes doubled: DDL cannot take a bound parameter."""
    return conn.dialect.identifier_preparer.quote_identifier(name)


def _connects(app_db: DatabaseUrl) -> bool:
    """Whether the database answers; absent and unreachable alike say no (the maintenance
    database then tells them apart)."""
    try:
        with short_lived_engine(app_db) as engine, engine.connect():
            return True
    except DBAPIError:
        return False


def datasource_tables(app_db: DatabaseUrl) -> None:
    """DBOS's datasource checkpoint tables, created with ours (alembic's env.py calls this after
    an upgrade), so the service's role needs no CREATE privilege: at launch DBOS finds them at
    its version and issues no DDL."""
    with reported(app_db, "cannot migrate"):
        dbos_gateway.migrate_datasource_tables(app_db)


def dbos_joined_views(app_db: DatabaseUrl) -> None:
    """The views that join DBOS's tables, created if they are missing and both DBOS's tables and
    ours are here (alembic's env.py calls this after every upgrade to head, so `alembic upgrade
    head` before `dbos migrate` still ends with them); no DDL when none is missing."""
    with (
        reported(app_db, "cannot migrate"),
        short_lived_engine(app_db) as engine,
        engine.begin() as conn,
    ):
        created = views.create_missing(conn)
    if created:
        log.info("views_created", views=created)


def upgrade_all(settings: Settings) -> None:
    """What `dbos migrate` does: DBOS's system tables first (some views join them), then ours;
    neither is touched unless both can be reached."""
    require_reachable(settings.system_db)
    require_reachable(settings.app_db)
    with reported(settings.system_db, "cannot migrate"):
        DBOS.migrate(settings.system_db.raw)
    with reported(settings.app_db, "cannot migrate"):
        upgrade(settings.app_db)


def upgrade(app_db: DatabaseUrl, revision: str = "head") -> None:
    ensure_database(app_db)
    command.upgrade(alembic_config(app_db), revision)


def at_head(conn: sa.Connection, app_db: DatabaseUrl) -> bool:
    """Whether the database's alembic revision is the newest one on disk."""
    heads = set(ScriptDirectory.from_config(alembic_config(app_db)).get_heads())
    return set(MigrationContext.configure(conn).get_current_heads()) == heads
