"""One logging pipeline: structlog events and stdlib records (dbos, sqlalchemy, alembic) alike."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, TextIO

import structlog
from dbos import DBOS
from dbos import error as dbos_error
from structlog.typing import Processor

from dbos_publishers._config import LogFormat

# Records of this logger print whatever the levels say: where the service listens, once.
ALWAYS = "app.startup"
# DBOS logs these each time it opens the system database (migrate, launch, each client): once.
ONCE_PREFIXES = ("Initializing DBOS system database", "Using SQLite as a system database")


class Once(logging.Filter):
    """Let the first record starting with each of `prefixes` through, and drop its repeats."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes, self.seen = prefixes, set[str]()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        prefix = next((p for p in self.prefixes if message.startswith(p)), None)
        if prefix is None:
            return True
        first = prefix not in self.seen
        self.seen.add(prefix)
        return first


CANCELLED = (dbos_error.DBOSWorkflowCancelledError, dbos_error.DBOSAwaitedWorkflowCancelledError)


def cancellation_is_not_an_error(record: logging.LogRecord) -> bool:
    """DBOS logs each workflow a `cancel` stopped mid-run as an error with a traceback: a cancel
    someone chose is not an error (an alert on errors would page on every cancel). Such a record
    becomes one info line, shown where its logger shows info."""
    error = record.exc_info[1] if record.exc_info else None
    if not isinstance(error, CANCELLED):
        return True
    record.levelno, record.levelname = logging.INFO, "INFO"
    record.msg, record.args, record.exc_info, record.exc_text = "workflow_cancelled", (), None, None
    return logging.getLogger(record.name).isEnabledFor(logging.INFO)


def add_workflow_context(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Stamp records emitted inside a workflow or step with its workflow id and step id."""
    workflow_id = DBOS.workflow_id
    if workflow_id is not None:
        event_dict.setdefault("workflow_id", workflow_id)
        step_id = DBOS.step_id
        if step_id is not None:
            event_dict.setdefault("step_id", step_id)
    return event_dict


def configure_logging(
    log_format: LogFormat,
    level: str,
    stream: TextIO | None = None,
    levels: Mapping[str, str] | None = None,
) -> None:
    """Install structlog and route stdlib loggers through it; call before DBOS(config=...).

    Logs go to `stream`, stderr unless given: stdout carries a command's data, and only the
    service itself (whose output is its log) passes stdout. `levels` sets loggers' own levels
    (Settings.log_levels: DBOS's and alembic's chatter at WARNING); the rest run at `level`."""
    stream = stream if stream is not None else sys.stderr
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        add_workflow_context,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *_renderers(log_format, stream),
            ],
        )
    )
    handler.addFilter(Once(ONCE_PREFIXES))
    handler.addFilter(cancellation_is_not_an_error)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    levels = dict(levels or {})
    for name, own in levels.items():
        logging.getLogger(name).setLevel(own)
    logging.getLogger(ALWAYS).setLevel(logging.INFO)
    # DBOS installs its own console handler unless the "dbos" logger already has one.
    dbos_logger = logging.getLogger("dbos")
    dbos_logger.handlers[:] = [handler]
    dbos_logger.propagate = False
    dbos_logger.setLevel(levels.get("dbos", level))


def add_filter(screen: Callable[[logging.LogRecord], bool]) -> None:
    """Screen every record the log handlers write (stdlib and DBOS's loggers alike)."""
    for handler in {*logging.getLogger().handlers, *logging.getLogger("dbos").handlers}:
        handler.addFilter(screen)


def _renderers(log_format: LogFormat, stream: TextIO) -> list[Processor]:
    use_console = log_format == "console" or (log_format == "auto" and stream.isatty())
    if use_console:
        return [structlog.dev.ConsoleRenderer()]
    return [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
