"""The long-running service that `dbos start` runs: migrate, launch, recover, process queues."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import structlog

from app import migrate, runtime
from app.config import Settings
from app.failpoints import failpoint

log = structlog.get_logger()


def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT; in-flight work is recovered by the next start."""
    stop = threading.Event()
    _install_signal_handlers(stop)
    runtime.validate(settings)  # before anything is written
    migrate.upgrade(settings.app_db)
    rt = runtime.build(settings)
    runtime.launch(rt)
    failpoint("service.recovery")
    log.info("service_ready")
    stop.wait()
    log.info("service_stopping")
    runtime.shutdown()
    log.info("service_stopped")


def _install_signal_handlers(stop: threading.Event) -> None:
    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("signal_received", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
