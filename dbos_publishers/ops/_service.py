"""The long-running service that `dbos start` runs: migrate, launch, recover, serve HTTP, process
queues, stop on SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import os
import signal
import threading
from contextlib import ExitStack
from types import FrameType
from typing import NoReturn

import structlog

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers import _logs as logs
from dbos_publishers import _migrate as migrate
from dbos_publishers import _runtime as runtime
from dbos_publishers._config import Settings
from dbos_publishers._errors import AppError
from dbos_publishers._failpoints import failpoint
from dbos_publishers.fleet import _workers as workers
from dbos_publishers.fleet._health import DatabaseHealth, Watchdog
from dbos_publishers.ops import _api as api
from dbos_publishers.ops import _status as status
from dbos_publishers.store._database import connection_failure

log = structlog.get_logger()
startup = structlog.get_logger(logs.ALWAYS)  # printed at any APP_LOG_LEVEL
CAUSE_DEPTH = 8  # how far down an exception's causes a lost connection is looked for
# How long a stop waits for running workflows to finish (DBOS.destroy): a deploy's SIGTERM lets
# chunks finish; a Ctrl-C is someone waiting at a terminal. A second signal exits at once.
GRACE_SEC_DEFAULT = 10
GRACE_SEC = {signal.SIGTERM: GRACE_SEC_DEFAULT, signal.SIGINT: 2}


def serve(blueprint: runtime.Blueprint) -> None:
    """Run until SIGTERM or SIGINT; in-flight work is recovered by the next start."""
    settings = blueprint.settings
    api.refuse_an_open_api(settings)  # before anything touches a database
    stop = StopRequest()
    _install_signal_handlers(stop)
    migrate.upgrade_all(settings)
    worker = workers.Worker(settings, workers.identity(settings))
    health = _watch_outages(settings, worker)
    claims = worker.join()  # refuses to run beside a live twin; claims workers that are gone
    try:
        rt = runtime.build(blueprint, executor_id=worker.me.executor_id)
    except BaseException:
        worker.leave()
        raise
    collector = status.install_collector(settings)
    with ExitStack() as resources:
        try:
            collector.recovered_at_start = runtime.launch(rt) + worker.recover(claims)
            worker.start_heartbeat()
            _start_watchdog(health, worker, resources)
            failpoint("service.recovery")
            url = _start_http(blueprint, resources, collector.recovered_at_start)
        except AppError:  # one clear line and exit 2, from the command line
            resources.close()  # the watchdog first: stopping DBOS stops the threads it watches
            _stop(rt, worker)  # what was recovering stays PENDING for the next worker
            raise
        except BaseException as exc:
            _start_failed(exc)
            resources.close()
            _stop(rt, worker)
            _exit_now(1)
        startup.info(
            "service_ready",
            executor_id=worker.me.executor_id,
            api=url or "off (APP_HTTP_PORT=off)",
            dashboard=f"{url}/dashboard" if url else None,
        )
        stop.wait()
        log.info("service_stopping")
    _stop(rt, worker, stop.grace_sec)
    log.info("service_stopped")
    _exit_now(0)


def _start_failed(exc: BaseException) -> None:
    """A database lost during start-up is one line (a supervisor restarts the service); any
    other failure keeps its traceback."""
    cause: BaseException | None = exc
    for _ in range(CAUSE_DEPTH):
        if cause is None:
            break
        reason = connection_failure(cause)
        if reason is not None:
            log.error("service_start_failed", reason=f"lost a database during start-up: {reason}")
            return
        cause = cause.__cause__ or cause.__context__
    log.exception("service_start_failed")


def _exit_now(code: int) -> NoReturn:
    """Leave without joining DBOS's workflow threads: DBOS.destroy() stops dispatching but
    leaves running workflows' threads behind, and the interpreter's exit would wait for them
    (forever, for a batch polling chunks no queue runs any more). Everything they did is
    checkpointed or will be recovered, so there is nothing to wait for."""
    logging.shutdown()
    os._exit(code)


def _stop(rt: runtime.Runtime, worker: workers.Worker, grace_sec: int = GRACE_SEC_DEFAULT) -> None:
    """DBOS first (in-flight work stays PENDING), then the lease: marked stopped, so another
    worker takes the unfinished work over at once."""
    try:
        runtime.shutdown(rt, grace_sec)
    finally:
        worker.leave()


def _watch_outages(settings: Settings, worker: workers.Worker) -> DatabaseHealth:
    """One line when a database goes away and one when it is back, whoever notices."""
    health = DatabaseHealth((settings.system_db, settings.app_db))
    logs.add_filter(health.screen)
    worker.on_outage = health.suspect
    return health


def _start_watchdog(health: DatabaseHealth, worker: workers.Worker, resources: ExitStack) -> None:
    """Exit 1, for a supervisor to restart the service, rather than live on without working."""

    def stopped_threads() -> list[str]:
        lease = [] if worker.heartbeat_alive() else ["worker-lease"]
        return [*dbos_gateway.stopped_queue_threads(), *lease]

    watchdog = Watchdog(health, stopped_threads, _exit_now)
    watchdog.start()
    resources.callback(watchdog.stop)


def _start_http(blueprint: runtime.Blueprint, resources: ExitStack, recovered: int) -> str | None:
    """Serve the HTTP API until `resources` closes (the client it reads with closes after it);
    returns its base URL (None: no HTTP API)."""
    settings = blueprint.settings
    if settings.http_port is None:
        return None
    client = resources.enter_context(dbos_gateway.client(settings.system_db))
    app = api.create_app(settings, client, token=settings.api_token, recovered_at_start=recovered)
    server = api.serve_in_thread(app, settings.http_host, settings.http_port)
    resources.callback(setattr, server, "should_exit", True)
    host = f"[{settings.http_host}]" if ":" in settings.http_host else settings.http_host
    return f"http://{host}:{settings.http_port}"


class StopRequest(threading.Event):
    """The first SIGTERM or SIGINT stops the service; which one says how long running work may
    take to finish (a deploy's SIGTERM waits longer than a person's Ctrl-C). A second signal
    while stopping leaves at once: everything is checkpointed or recovered by the next start,
    and a hung chunk must never hold a worker that was asked twice to go."""

    first: signal.Signals | None = None

    @property
    def grace_sec(self) -> int:
        return GRACE_SEC[self.first or signal.SIGTERM]


def _install_signal_handlers(stop: StopRequest) -> None:
    def handle(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum)
        if stop.is_set():
            log.warning("signal_received_again", signal=name.name, exiting="now")
            _exit_now(128 + signum)
        log.info("signal_received", signal=name.name, grace_sec=GRACE_SEC[name])
        stop.first = name
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
