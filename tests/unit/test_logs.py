"""The logging pipeline's quiet start-up: DBOS's and alembic's INFO chatter hidden unless asked
for, a repeated DBOS banner printed once, and where the service listens printed at any level."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from dbos import error as dbos_error

from dbos_publishers._config import logger_levels
from dbos_publishers._logs import ALWAYS, configure_logging
from tests.helpers import process_state_restored


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    with process_state_restored():
        yield io.StringIO()


def _events(stream: io.StringIO) -> list[str]:
    return [json.loads(line)["event"] for line in stream.getvalue().splitlines()]


def _configure(stream: io.StringIO, env: dict[str, str]) -> None:
    level = env.get("APP_LOG_LEVEL", "INFO")
    configure_logging("json", level, stream, logger_levels(env))


def test_dbos_and_alembic_info_is_hidden_but_ours_is_not(stream: io.StringIO) -> None:
    _configure(stream, {})
    logging.getLogger("dbos").info("Applying DBOS system database schema migration 1")
    logging.getLogger("alembic.runtime.migration").info("Context impl SQLiteImpl.")
    logging.getLogger("dbos").warning("a real warning")
    structlog.get_logger("dbos_publishers._runtime").info("service_launched")
    assert _events(stream) == ["a real warning", "service_launched"]


def test_a_per_logger_level_brings_dbos_back(stream: io.StringIO) -> None:
    _configure(stream, {"APP_LOG_LEVELS": "dbos=INFO"})
    logging.getLogger("dbos").info("DBOS launched!")
    logging.getLogger("alembic").info("Context impl SQLiteImpl.")
    assert _events(stream) == ["DBOS launched!"]


def test_the_system_database_banner_is_printed_once(stream: io.StringIO) -> None:
    _configure(stream, {"APP_LOG_LEVEL": "DEBUG"})
    for _ in range(4):  # migrate, launch, the API's client, a status read
        logging.getLogger("dbos").info("Initializing DBOS system database with URL: sqlite:///x")
    logging.getLogger("dbos").info("Executor ID: vm-1")
    assert _events(stream) == [
        "Initializing DBOS system database with URL: sqlite:///x",
        "Executor ID: vm-1",
    ]


def test_where_the_service_listens_is_printed_at_warning(stream: io.StringIO) -> None:
    _configure(stream, {"APP_LOG_LEVEL": "WARNING"})
    structlog.get_logger("dbos_publishers.ops._service").info("hidden")
    structlog.get_logger(ALWAYS).info("service_ready", api="http://127.0.0.1:8000")
    assert _events(stream) == ["service_ready"]


def _raised(error: BaseException) -> BaseException:
    try:
        raise error
    except BaseException as caught:  # DBOS's cancellation is a BaseException
        return caught


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            dbos_error.DBOSWorkflowCancelledError("batch-b1/chunk-00003"),
            ("info", "workflow_cancelled"),
        ),
        (  # the broken variant's side: any other exception stays an error with its traceback
            RuntimeError("the broker refused"),
            ("error", "Exception encountered in background workflow:"),
        ),
    ],
    ids=["cancelled-is-info", "other-errors-stay-errors"],
)
def test_a_workflow_stopped_by_cancel_is_one_info_line_not_an_error(
    stream: io.StringIO, error: BaseException, expected: tuple[str, str]
) -> None:
    _configure(stream, {"APP_LOG_LEVELS": "dbos=INFO"})
    logging.getLogger("dbos").error(
        "Exception encountered in background workflow:", exc_info=_raised(error)
    )
    (record,) = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert (record["level"], record["event"]) == expected
    assert ("exception" in record) == (expected[0] == "error")


def test_a_cancelled_workflow_is_not_shown_where_dbos_shows_warnings_only(
    stream: io.StringIO,
) -> None:
    _configure(stream, {})  # DBOS's logger at WARNING by default
    logging.getLogger("dbos").error(
        "Exception encountered in background workflow:",
        exc_info=_raised(dbos_error.DBOSWorkflowCancelledError("batch-b1")),
    )
    assert _events(stream) == []
