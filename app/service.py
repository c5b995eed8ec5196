"""The long-running service that `dbos start` runs: migrate, launch, recover, serve HTTP, process
queues, stop on SIGTERM/SIGINT."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import structlog
import uvicorn

from app import api, migrate, runtime, status
from app.config import Settings
from app.failpoints import failpoint

log = structlog.get_logger()


def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT; in-flight work is recovered by the next start."""
    stop = threading.Event()
    _install_signal_handlers(stop)
    runtime.validate(settings)  # before anything is written
    migrate.upgrade_all(settings)
    rt = runtime.build(settings)
    collector = status.install_collector(settings)
    collector.recovered_at_start = runtime.launch(rt)
    try:
        failpoint("service.recovery")
        http = _start_http(settings)
    except BaseException:
        runtime.shutdown()  # what was recovering stays PENDING for the next start
        raise
    log.info("service_ready")
    stop.wait()
    log.info("service_stopping")
    if http is not None:
        http.should_exit = True
    runtime.shutdown()
    log.info("service_stopped")


def _start_http(settings: Settings) -> uvicorn.Server | None:
    if settings.http_port is None:
        return None
    client = runtime.open_client(settings)
    app = api.create_app(settings, client, token=settings.api_token)
    server = api.serve_in_thread(app, settings.http_host, settings.http_port)
    log.info("http_listening", host=settings.http_host, port=settings.http_port)
    return server


def _install_signal_handlers(stop: threading.Event) -> None:
    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("signal_received", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
