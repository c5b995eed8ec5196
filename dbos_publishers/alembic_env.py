"""alembic's environment: the framework's tables (store._schema) are the target metadata."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from alembic import context

from dbos_publishers._config import DatabaseUrl, database_urls_from_env, log_level, logger_levels
from dbos_publishers._errors import AppError
from dbos_publishers._logs import configure_logging
from dbos_publishers._migrate import (
    DBOS_OWNED_TABLES,
    at_head,
    datasource_tables,
    dbos_joined_views,
    ensure_database,
)
from dbos_publishers.store._database import reported, short_lived_engine
from dbos_publishers.store._schema import metadata

EXIT_BAD_INPUT = 2


def _app_db() -> DatabaseUrl:
    """From the environment, as the service reads it; logging configured the way it does."""
    configure_logging("auto", log_level(os.environ), levels=logger_levels(os.environ))
    # Its one record (an error) repeats the `FAILED: ...` line alembic prints as its answer.
    logging.getLogger("alembic.util.messaging").setLevel(logging.CRITICAL)
    return database_urls_from_env(os.environ)[1]


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Leave DBOS's own tables in this database out of autogenerate and `alembic check`."""
    return not (type_ == "table" and name in DBOS_OWNED_TABLES)


def _options(app_db: DatabaseUrl) -> dict[str, Any]:
    return {
        "target_metadata": metadata,
        "include_object": include_object,
        "render_as_batch": app_db.backend == "sqlite",  # SQLite cannot ALTER most things
    }


def run_offline(app_db: DatabaseUrl) -> None:
    context.configure(url=app_db.sqlalchemy_url, literal_binds=True, **_options(app_db))
    with context.begin_transaction():
        context.run_migrations()


def run_online(app_db: DatabaseUrl) -> None:
    ensure_database(app_db)
    with short_lived_engine(app_db) as engine, engine.connect() as conn:
        context.configure(connection=conn, **_options(app_db))
        with context.begin_transaction():
            context.run_migrations()
        upgraded = _names_a_destination() and at_head(conn, app_db)
    if upgraded:  # `dbos migrate` runs this: the service's role then needs no CREATE
        datasource_tables(app_db)
        dbos_joined_views(app_db)


def _names_a_destination() -> bool:
    """`upgrade` and `downgrade` name a destination revision; `check` and autogenerate, which
    must write nothing, do not."""
    try:
        context.get_revision_argument()
    except KeyError:
        return False
    return True


def _run(app_db: DatabaseUrl) -> None:
    if context.is_offline_mode():
        run_offline(app_db)
    else:
        run_online(app_db)


def _from_a_shell() -> None:
    """`alembic ...` or `dbos migrate`: bad input or a database that cannot be used is one line
    and exit 2, as from the CLI (run in-process by `_migrate`, errors reach the caller)."""
    try:
        app_db = _app_db()
        with reported(app_db, "cannot migrate"):
            _run(app_db)
    except AppError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(EXIT_BAD_INPUT) from None


def run() -> None:
    """Run the migration alembic asked for: in-process (`_migrate.upgrade` hands the URL over) or
    from a shell (`alembic ...`, `dbos migrate`), which reads it from the environment."""
    given = context.config.attributes.get("app_db")
    if isinstance(given, DatabaseUrl):
        _run(given)
    else:
        _from_a_shell()
