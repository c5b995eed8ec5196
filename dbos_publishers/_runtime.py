"""The composition root: DBOS, the datasource, publisher instances, launch, queues, shutdown.

Nothing else creates the DBOS instance, the datasource or publisher instances. Validation
happens once, in `validate`, which returns the blueprint `build` assembles.
"""

from __future__ import annotations

import importlib
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
import structlog
from dbos import DBOS, DBOSConfig, SQLAlchemyDatasource, WorkflowStatus
from sqlalchemy import event
from sqlalchemy.orm import sessionmaker

from dbos_publishers import _connections as connections
from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers import _failpoints as failpoints
from dbos_publishers import _queues as queues
from dbos_publishers._config import (
    APP_NAME,
    ConfigError,
    DatabaseUrl,
    PublisherDeclaration,
    Settings,
)
from dbos_publishers._connections import ConnectionPlan
from dbos_publishers._dbos_gateway import IsolationLevel
from dbos_publishers._hooks import awaited, unawaited_hook
from dbos_publishers._legacy import moved_class_path, removed_hook
from dbos_publishers._publisher import PLANNING, Publisher
from dbos_publishers.fleet import _orphans as orphans
from dbos_publishers.store._database import session_settings

log = structlog.get_logger()

LOCAL_EXECUTOR = "local"  # DBOS's default: for processes that are not workers (bench, tests)


@dataclass(frozen=True)
class Blueprint:
    """Settings whose publisher classes imported and took their options, and whose failpoint
    spec parsed: everything `build` needs, checked without touching a database."""

    settings: Settings
    classes: dict[str, type[Publisher]]
    connections: ConnectionPlan


@dataclass
class Runtime:
    settings: Settings
    datasource: SQLAlchemyDatasource
    publishers: dict[str, Publisher]
    executor_id: str = LOCAL_EXECUTOR
    recovered_at_start: int = 0
    opened: list[Publisher] = field(default_factory=list)


def validate(settings: Settings) -> Blueprint:
    """Refuse bad failpoint specs, unimportable publisher classes and options a class does not
    take, without touching a database."""
    # Classes first: importing one may declare failpoints that the spec names.
    classes = {d.name: load_class(d) for d in settings.publishers}
    for declaration in settings.publishers:
        validate_options(classes[declaration.name], declaration)
    failpoints.parse(settings.failpoints)
    return Blueprint(settings=settings, classes=classes, connections=connections.plan(settings))


def validate_options(cls: type[Publisher], declaration: PublisherDeclaration) -> None:
    try:
        cls.validate_options(declaration.option_map)
    except ConfigError as exc:
        raise ConfigError(f"publisher '{declaration.name}': {exc}") from None


def dbos_config(blueprint: Blueprint, executor_id: str = LOCAL_EXECUTOR) -> DBOSConfig:
    settings = blueprint.settings
    return {
        "name": APP_NAME,
        "system_database_url": settings.system_db.raw,
        "executor_id": executor_id,
        # Fixed, so a restart after an unrelated code edit still recovers pending work.
        "application_version": settings.application_version,
        "log_level": settings.level_of("dbos"),  # DBOS sets its logger's level from this
        # DBOS's default is 20 whatever the concurrency; here it is the budget's share.
        "sys_db_pool_size": blueprint.connections.system,
    }


def build(
    blueprint: Blueprint,
    *,
    isolation: IsolationLevel | None = None,
    executor_id: str = LOCAL_EXECUTOR,
) -> Runtime:
    """Construct everything that must exist before DBOS.launch() and open the publishers.

    `isolation` overrides the chunk transaction's isolation level (the benchmark uses it to
    measure the exp7 shape, which runs SERIALIZABLE)."""
    settings = blueprint.settings
    failpoints.arm(settings.failpoints, settings.failpoint_seed)
    budget = blueprint.connections
    log.debug(
        "connection_budget",
        budget=budget.budget,
        system_pool=budget.system,
        datasource_pool=budget.datasource,
        lease_listener_api=budget.fixed,
    )
    DBOS(config=dbos_config(blueprint, executor_id))
    datasource = SQLAlchemyDatasource.create(
        settings.app_db.raw,
        engine_kwargs=_engine_kwargs(blueprint, executor_id),
        sessionmaker=_chunk_sessionmaker(),
    )
    isolation = isolation or isolation_level(settings.app_db)
    slots = threading.BoundedSemaphore(settings.queues.chunk_concurrency)  # see CHUNK_PREFETCH
    publishers = {
        d.name: construct(blueprint.classes[d.name], d, datasource, isolation, slots)
        for d in settings.publishers
    }
    rt = Runtime(
        settings=settings, datasource=datasource, publishers=publishers, executor_id=executor_id
    )
    for publisher in publishers.values():  # before launch: recovery may deliver at once
        awaited(publisher.open())
        rt.opened.append(publisher)
    return rt


def construct(
    cls: type[Publisher],
    declaration: PublisherDeclaration,
    datasource: SQLAlchemyDatasource,
    isolation: IsolationLevel,
    slots: threading.Semaphore | None = None,
) -> Publisher:
    """One publisher instance; a class whose construction fails is refused in one line (its
    traceback at debug level), never a traceback at start."""
    try:
        return cls(
            declaration.name,
            datasource=datasource,
            chunk_size=declaration.chunk_size,
            isolation_level=isolation,
            options=declaration.option_map,
            chunk_slots=slots,
        )
    except Exception as exc:
        log.debug("publisher_construction_failed", publisher=declaration.name, exc_info=True)
        reason = (str(exc).splitlines() or [""])[0]
        raise ConfigError(
            f"publisher '{declaration.name}': {cls.__name__}(...) failed: "
            f"{type(exc).__name__}: {reason}"
        ) from None


def launch(rt: Runtime) -> int:
    """Warn of orphaned work, launch DBOS (which recovers this executor's pending workflows),
    register queues; returns how many PENDING workflows of this executor it recovers."""
    _require_bounds(rt)
    active = dbos_gateway.active_workflows_at(rt.settings.system_db)
    _warn_of_orphans(rt.settings, active)
    DBOS.launch()
    queues.register_queues(rt.settings.queues)
    rt.recovered_at_start = sum(
        1 for wf in active if wf.status == "PENDING" and wf.executor_id == rt.executor_id
    )
    log.info(
        "service_launched",
        publishers=sorted(rt.publishers),
        system_database=rt.settings.system_db.safe,
        app_database=rt.settings.app_db.safe,
        recovering=rt.recovered_at_start,
    )
    return rt.recovered_at_start


def _require_bounds(rt: Runtime) -> None:
    """Refuse to start when the chunk connections do not get their transaction bounds (read
    back from the server: a pooler may drop startup options without a word)."""
    if rt.settings.app_db.backend == "sqlite":
        return
    asked = connections.transaction_bounds(rt.settings.leases)
    with rt.datasource.engine.connect() as conn:
        found = session_settings(conn, list(asked.settings()))
    reason = connections.bounds_not_applied(asked, found)
    if reason is not None:
        raise ConfigError(reason)


def _warn_of_orphans(settings: Settings, active: list[WorkflowStatus]) -> None:
    """Work of a publisher not declared here never blocks a start: the other publishers' work
    must go on. If this worker dequeues it, DBOS refuses to dispatch it (one error line, no
    retry loop; it stays PENDING and visible in `status` as orphaned). One warning per
    publisher says how to resolve it."""
    for publisher, workflow_ids in orphans.orphaned_workflows(settings, active).items():
        log.warning(
            "orphaned_work",
            publisher=publisher,
            workflows=len(workflow_ids),
            resolve=orphans.orphan_resolution(publisher, workflow_ids),
        )


def shutdown(rt: Runtime, timeout_sec: int = 10) -> None:
    """Stop DBOS (what is in flight stays PENDING for the next start), then close publishers."""
    DBOS.destroy(workflow_completion_timeout_sec=timeout_sec)
    while rt.opened:
        awaited(rt.opened.pop().close())
    dbos_gateway.forget_instances()  # so this process could build a runtime again


def isolation_level(app_db: DatabaseUrl) -> IsolationLevel:
    # SQLite accepts only SERIALIZABLE; on Postgres, READ COMMITTED lets counter upserts queue on
    # the row lock instead of aborting each other, and the ledger's primary key still refuses
    # any duplicate message id.
    return "SERIALIZABLE" if app_db.backend == "sqlite" else "READ COMMITTED"


def load_class(declaration: PublisherDeclaration) -> type[Publisher]:
    class_path = declaration.class_path
    if moved := moved_class_path(class_path):
        log.warning(
            "publisher_class_path_deprecated",
            publisher=declaration.name,
            declared=class_path,
            use=moved,
        )
        class_path = moved
    module_name, _, class_name = class_path.partition(":")
    _import_from_working_directory()
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
    if refused := removed_hook(cls) or unawaited_hook(cls):
        raise ConfigError(f"publisher '{declaration.name}': {refused}")
    return cls


def _import_from_working_directory() -> None:
    """A service's own modules sit beside its publishers file, in the working directory, as
    uvicorn finds an app: `python -m` puts it on sys.path, a console script does not."""
    here = str(Path.cwd())
    if "" not in sys.path and here not in sys.path:
        sys.path.insert(0, here)


def _engine_kwargs(blueprint: Blueprint, executor_id: str) -> dict[str, object]:
    if blueprint.settings.app_db.backend == "sqlite":
        return {}
    # A hard bound (no overflow): one connection per chunk transaction at once, plus one. No
    # pre-ping (a round trip and a commit per checkout, ~3.5 commits per chunk): a connection
    # that died with Postgres fails its attempt as invalidated, and the datasource runs the
    # attempt again on a fresh one (dbos._utils.retriable_postgres_exception).
    return {
        "pool_size": blueprint.connections.datasource,
        "max_overflow": 0,
        "connect_args": connections.chunk_connect_args(blueprint.settings.leases, executor_id),
    }


def _chunk_sessionmaker() -> sessionmaker[sa.orm.Session]:
    factory: sessionmaker[sa.orm.Session] = sessionmaker(expire_on_commit=False)
    event.listen(factory, "after_commit", _after_chunk_commit)
    return factory


def _after_chunk_commit(session: sa.orm.Session) -> None:
    # The step's writes and its recorded output are durable now; scenarios count these records
    # to prove no step commits twice.
    log.info("step_committed")
    if session.info.get(PLANNING):
        return  # a batch's plan, not a chunk: `@N` triggers count chunk commits only
    # Fires after COMMIT and before DBOS checkpoints the step: the window exactly-once must cover.
    failpoints.failpoint("chunk.after_commit")
