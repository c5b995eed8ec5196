"""Test helpers: the scenario harness (the real service in a subprocess, the real CLI, reads of
both databases) under the names the tests use, and the CLI run in this process."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog
from dbos import DBOS

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers._config import DatabaseUrl
from dbos_publishers.ops import _cli as cli
from dbos_publishers.store import _ledger as ledger
from dbos_publishers.store._database import short_lived_engine
from dbos_publishers.testing import sqlite_settings
from lab import COMMANDS
from lab import cli as lab_cli
from lab.paths import REPO_ROOT
from lab.scenarios.harness import VENV_BIN, Databases, ScenarioBackend, ServiceHarness

Backend = ScenarioBackend
ROOT = REPO_ROOT
ServiceRunner = ServiceHarness
# What `serve` replaces with its own handlers; restored after each in-process run.
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def dbos_migrate(url: str) -> subprocess.CompletedProcess[str]:
    """The real `dbos migrate`, from the project root, as a deployment runs it."""
    env = {
        **os.environ,
        "DBOS_SYSTEM_DATABASE_URL": url,
        "APP_DATABASE_URL": url,
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",  # `alembic` in dbos-config.yaml
    }
    return subprocess.run(
        [str(VENV_BIN / "dbos"), "migrate"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@dataclass(frozen=True)
class CliRun:
    """What a command did: its exit code and everything it wrote."""

    returncode: int
    stdout: str
    stderr: str


@contextmanager
def process_state_restored() -> Iterator[None]:
    """Logging, structlog, signal handlers and the DBOS instance as they were before.

    `cli.main` sets these up once per process, as a command does; a test process runs many."""
    root, dbos_logger = logging.getLogger(), logging.getLogger("dbos")
    root_state = (root.handlers[:], root.level)
    dbos_state = (dbos_logger.handlers[:], dbos_logger.level, dbos_logger.propagate)
    structlog_config = structlog.get_config()
    handlers = {signum: signal.getsignal(signum) for signum in HANDLED_SIGNALS}
    dbos_before = dbos_gateway.current_instance()
    try:
        yield
    finally:
        root.handlers[:], level = root_state
        root.setLevel(level)
        dbos_logger.handlers[:], level, dbos_logger.propagate = dbos_state
        dbos_logger.setLevel(level)
        structlog.configure(**structlog_config)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        if dbos_gateway.current_instance() is not dbos_before:  # a command constructed DBOS here
            DBOS.destroy(destroy_registry=False)


def reference_cli(argv: Sequence[str]) -> int:
    """The repository's command lines as their `__main__` runs them: the lab's commands
    (`python -m lab`), else the framework's as the reference service names it (`python -m app`)."""
    if argv[:1] and argv[0] in COMMANDS:
        return lab_cli.main(argv)
    return cli.main(argv, prog="python -m app")


@dataclass(frozen=True)
class InProcessCli:
    """`python -m app ARGS` (or `python -m lab ARGS`) in this process: no interpreter start-up.

    `main` may be another command line's entry point (alembic's)."""

    capture: pytest.CaptureFixture[str]  # capfd: what a parent process would read
    cwd: Path
    env: Mapping[str, str]  # set for every run, on top of this process's environment
    main: Callable[[Sequence[str]], int | None] = reference_cli

    def __call__(self, *args: str, **env: str) -> CliRun:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in {**self.env, **env}.items():
                patch.setenv(name, value)
            patch.chdir(self.cwd)
            self.capture.readouterr()  # drop anything written before
            with process_state_restored():
                returncode = self._exit_code(list(args))
            out, err = self.capture.readouterr()
        return CliRun(returncode, out, err)

    def _exit_code(self, argv: list[str]) -> int:
        try:
            return self.main(argv) or 0
        except SystemExit as exc:  # argparse: bad arguments exit 2, --help exits 0
            return exc.code if isinstance(exc.code, int) else int(exc.code is not None)


def harness_env(runner: ServiceHarness) -> dict[str, str]:
    """The variables the harness gives its CLI subprocesses beyond this process's own."""
    return {k: v for k, v in runner.env().items() if os.environ.get(k) != v}


__all__ = [
    "ROOT",
    "Backend",
    "CliRun",
    "Databases",
    "InProcessCli",
    "ServiceRunner",
    "harness_env",
    "process_state_restored",
    "sqlite_settings",
]


WAIT_DEADLINE_SEC = 120


def wait_until(
    condition: Callable[[], bool], what: str, deadline_sec: float = WAIT_DEADLINE_SEC
) -> None:
    """Poll `condition` until it holds; fail naming `what` after `deadline_sec`."""
    deadline = time.monotonic() + deadline_sec
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def published(app_db: DatabaseUrl, batch_id: str) -> int:
    """How many of a batch's messages the ledger holds now."""
    with short_lived_engine(app_db) as engine, engine.connect() as conn:
        return ledger.batch_published(conn, batch_id)
