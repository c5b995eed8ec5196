"""The composition root: logging, DBOS, the datasource, publisher instances, launch, queues.

Nothing else creates the DBOS instance, the datasource or publisher instances (short-lived
engines for one-off reads come from app.database).
"""

from __future__ import annotations

import importlib
from collections import Counter
from dataclasses import dataclass

import sqlalchemy as sa
import structlog
from dbos import DBOS, DBOSClient, DBOSConfig, WorkflowStatus
from dbos._datasource import IsolationLevel, SQLAlchemyDatasource
from sqlalchemy import event
from sqlalchemy.orm import sessionmaker

from app import failpoints, queues
from app.config import APP_NAME, ConfigError, DatabaseUrl, PublisherDeclaration, Settings
from app.database import system_tables_exist
from app.publishers.base import BATCH_WORKFLOW, PUBLISHER_CLASS_NAME, Publisher

log = structlog.get_logger()

ACTIVE_STATUSES = ["PENDING", "ENQUEUED"]


class OrphanedWorkError(RuntimeError):
    """Pending work names a publisher that is no longer declared."""


@dataclass
class Runtime:
    settings: Settings
    datasource: SQLAlchemyDatasource
    publishers: dict[str, Publisher]


def dbos_config(settings: Settings) -> DBOSConfig:
    return {
        "name": APP_NAME,
        "system_database_url": settings.system_db.raw,
        # Fixed, so a restart after an unrelated code edit still recovers pending work.
        "application_version": settings.application_version,
        "log_level": settings.log_level,
    }


def validate(settings: Settings) -> None:
    """Refuse bad failpoint specs, unimportable publisher classes and options a class does not
    take, without touching a database."""
    # Classes first: importing one may declare failpoints that the spec names.
    for declaration in settings.publishers:
        validate_options(load_class(declaration), declaration)
    failpoints.parse(settings.failpoints)


def validate_options(cls: type[Publisher], declaration: PublisherDeclaration) -> None:
    try:
        cls.validate_options(declaration.option_map)
    except ConfigError as exc:
        raise ConfigError(f"publisher '{declaration.name}': {exc}") from None


def build(settings: Settings, *, isolation: IsolationLevel | None = None) -> Runtime:
    """Construct everything that must exist before DBOS.launch(); logging is configured first.

    `isolation` overrides the chunk transaction's isolation level (the benchmark uses it to
    measure the exp7 shape, which runs SERIALIZABLE)."""
    validate(settings)  # imports the publisher classes before arming failpoints they declare
    failpoints.arm(settings.failpoints, settings.failpoint_seed)
    DBOS(config=dbos_config(settings))
    datasource = SQLAlchemyDatasource.create(
        settings.app_db.raw,
        engine_kwargs=_engine_kwargs(settings),
        sessionmaker=_chunk_sessionmaker(),
    )
    isolation = isolation or isolation_level(settings.app_db)
    publishers = {
        d.name: instantiate(d, datasource=datasource, isolation_level=isolation)
        for d in settings.publishers
    }
    return Runtime(settings=settings, datasource=datasource, publishers=publishers)


def launch(runtime: Runtime) -> int:
    """Refuse orphaned work, launch DBOS (which recovers pending workflows), register queues;
    returns how many PENDING workflows there were to recover."""
    active = active_workflows(runtime.settings)
    refuse_orphans(runtime.settings, active)
    DBOS.launch()
    queues.register_queues(runtime.settings.queues)
    log.info(
        "service_launched",
        publishers=sorted(runtime.publishers),
        system_database=runtime.settings.system_db.safe,
        app_database=runtime.settings.app_db.safe,
    )
    return sum(1 for wf in active if wf.status == "PENDING")


def shutdown(timeout_sec: int = 10) -> None:
    DBOS.destroy(workflow_completion_timeout_sec=timeout_sec)


def isolation_level(app_db: DatabaseUrl) -> IsolationLevel:
    # SQLite accepts only SERIALIZABLE; on Postgres, READ COMMITTED lets counter upserts queue on
    # the row lock instead of aborting each other, and the ledger's primary key still refuses
    # any duplicate message id.
    return "SERIALIZABLE" if app_db.backend == "sqlite" else "READ COMMITTED"


def instantiate(
    declaration: PublisherDeclaration,
    *,
    datasource: SQLAlchemyDatasource,
    isolation_level: IsolationLevel,
) -> Publisher:
    cls = load_class(declaration)
    return cls(
        declaration.name,
        datasource=datasource,
        chunk_size=declaration.chunk_size,
        isolation_level=isolation_level,
        options=declaration.option_map,
    )


def load_class(declaration: PublisherDeclaration) -> type[Publisher]:
    module_name, _, class_name = declaration.class_path.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        raise ConfigError(
            f"publisher '{declaration.name}': cannot import {declaration.class_path}"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Publisher)):
        raise ConfigError(
            f"publisher '{declaration.name}': {declaration.class_path} is not a Publisher subclass"
        )
    return cls


def _engine_kwargs(settings: Settings) -> dict[str, object]:
    if settings.app_db.backend == "sqlite":
        return {}
    return {"pool_size": settings.queues.chunk_concurrency + 2, "pool_pre_ping": True}


def _chunk_sessionmaker() -> sessionmaker[sa.orm.Session]:
    factory: sessionmaker[sa.orm.Session] = sessionmaker(expire_on_commit=False)
    event.listen(factory, "after_commit", _after_chunk_commit)
    return factory


def _after_chunk_commit(_session: sa.orm.Session) -> None:
    # The step's writes and its recorded output are durable now; scenarios count these records
    # to prove no step commits twice.
    log.info("step_committed")
    # Fires after COMMIT and before DBOS checkpoints the step: the window exactly-once must cover.
    failpoints.failpoint("chunk.after_commit")


def open_client(settings: Settings) -> DBOSClient:
    """A DBOS client on the system database, for processes that submit or inspect work."""
    return DBOSClient(
        system_database_url=settings.system_db.raw,
        application_name=APP_NAME,
        retry_connection_errors=False,
    )


def active_workflows(settings: Settings) -> list[WorkflowStatus]:
    """PENDING and ENQUEUED workflows of this application (none before DBOS's tables exist)."""
    if not system_tables_exist(settings.system_db):
        return []
    client = open_client(settings)
    try:
        return client.list_workflows(status=ACTIVE_STATUSES, load_input=False, load_output=False)
    finally:
        client.destroy()


def find_orphans(settings: Settings, active: list[WorkflowStatus] | None = None) -> Counter[str]:
    """Pending or enqueued publisher workflows whose publisher is not declared, per name."""
    declared = {d.name for d in settings.publishers}
    active = active_workflows(settings) if active is None else active
    return Counter(
        wf.config_name
        for wf in active
        if wf.class_name == PUBLISHER_CLASS_NAME
        and wf.config_name is not None
        and wf.config_name not in declared
    )


def refuse_orphans(settings: Settings, active: list[WorkflowStatus]) -> None:
    orphans = find_orphans(settings, active)
    if orphans:
        names = ", ".join(f"'{name}' ({count} workflows)" for name, count in orphans.items())
        raise OrphanedWorkError(
            f"pending work needs publishers that are not declared: {names}; declare them again "
            f"in the publishers file, or cancel their {BATCH_WORKFLOW} workflows with "
            "`dbos workflow cancel`"
        )
