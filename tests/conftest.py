"""Fixtures: a real SQLite file or a fresh Postgres database per test, a service subprocess, and
the CLI in this process; the order parallel workers take the tests in."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from dbos import DBOS
from psycopg import sql

from dbos_publishers import _migrate as migrate
from dbos_publishers._config import DatabaseUrl
from lab.scenarios.harness import descendants, with_repo_on_path
from tests.brokers import jetstream_stream, redis_stream  # noqa: F401 - the broker fixtures
from tests.helpers import Backend, Databases, InProcessCli, ServiceRunner, harness_env

# Every process a test starts runs the repository's reference service (`app`) or lab, which the
# wheel does not install: they import from the repository, from whichever folder they run.
os.environ["PYTHONPATH"] = with_repo_on_path(os.environ)

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() == "true"
# Every database a test process creates carries its pid: each xdist worker (a process of its own)
# has its own template, and databases left by a process that died are found and dropped.
DB_PREFIX = f"pubtest_{os.getpid()}_"
TEMPLATE_DB = f"{DB_PREFIX}template"
OWNER_PID = re.compile(r"pubtest_(?:template_)?(\d+)(?:_|$)")
MAX_PID = 4_194_304  # the kernel's ceiling (pid_max)


def _postgres_reachable() -> str | None:
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            return None
    except psycopg.OperationalError as exc:
        return str(exc).strip().splitlines()[0]


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(POSTGRES_URL, autocommit=True)


def _drop(name: str, *, force: bool = True) -> sql.Composed:
    """DROP DATABASE for a name quoted as an identifier (never pasted into SQL)."""
    forced = sql.SQL(" WITH (FORCE)" if force else "")
    return sql.SQL("DROP DATABASE IF EXISTS {}{}").format(sql.Identifier(name), forced)


def _db_url(name: str) -> str:
    return POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"


def _process_gone(pid: int) -> bool:
    if pid > MAX_PID:  # not a pid: some other naming
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _drop_orphaned_databases(admin: psycopg.Connection[tuple[object, ...]]) -> None:
    """Drop test databases whose process is gone (a worker killed mid-run cannot clean up) and
    that nobody is connected to."""
    idle = admin.execute(
        "SELECT datname FROM pg_database WHERE datname LIKE 'pubtest%'"
        " AND datname NOT IN (SELECT datname FROM pg_stat_activity WHERE datname IS NOT NULL)"
    ).fetchall()
    for (name,) in idle:
        owner = OWNER_PID.match(str(name))
        if owner and _process_gone(int(owner.group(1))):
            with contextlib.suppress(psycopg.Error):  # another worker may be dropping it too
                admin.execute(_drop(str(name), force=False))


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture(autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """A test that leaves a process of its own running fails (and the process is killed): a
    leaked service would hold CPU and leases for the rest of the run."""
    yield
    leftover = {pid: _command(pid) for pid in descendants(os.getpid()) if _running(pid)}
    for pid in leftover:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if leftover:
        pytest.fail(f"the test left {len(leftover)} processes running: {list(leftover.values())}")


def _command(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:100]
    return "?"


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The Postgres URL; skip when it is unreachable, except under CI=true, where that fails."""
    reason = _postgres_reachable()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"CI=true requires Postgres at {POSTGRES_URL}: {reason}")
        pytest.skip(f"Postgres not reachable: {reason}")
    return POSTGRES_URL


@pytest.fixture(scope="session")
def postgres_template(postgres_server: str) -> Iterator[str]:
    """Migrate one template database per test process (app tables and DBOS tables)."""
    with _admin() as admin:
        _drop_orphaned_databases(admin)
        admin.execute(_drop(TEMPLATE_DB, force=False))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE_DB)))
    url = _db_url(TEMPLATE_DB)
    DBOS.migrate(url)  # first, as `dbos migrate` does: some views join DBOS's tables
    migrate.upgrade(DatabaseUrl.parse(url, "template"))
    yield TEMPLATE_DB
    with _admin() as admin:
        admin.execute(_drop(TEMPLATE_DB))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> Backend:
    name: Backend = request.param
    return name


@pytest.fixture
def databases(
    backend: Backend, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Databases]:
    if backend == "sqlite":
        yield Databases(
            backend="sqlite",
            system_url=f"sqlite:///{tmp_path / 'system.sqlite'}",
            app_url=f"sqlite:///{tmp_path / 'app.sqlite'}",
        )
        return
    template = request.getfixturevalue("postgres_template")
    name = f"{DB_PREFIX}{uuid.uuid4().hex[:12]}"
    with _admin() as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    url = _db_url(name)
    yield Databases(backend="postgres", system_url=url, app_url=url)
    with _admin() as admin:
        admin.execute(_drop(name))


@pytest.fixture
def service(databases: Databases, tmp_path: Path) -> Iterator[ServiceRunner]:
    runner = ServiceRunner(databases=databases, workdir=tmp_path)
    yield runner
    runner.kill()


@pytest.fixture
def sqlite_runner(tmp_path: Path) -> Iterator[ServiceRunner]:
    """A harness on SQLite files in tmp_path (not created yet), with `orders` declared; a
    service a test started through it is killed afterwards, whatever the test's outcome."""
    databases = Databases(
        backend="sqlite",
        system_url=f"sqlite:///{tmp_path / 'system.sqlite'}",
        app_url=f"sqlite:///{tmp_path / 'app.sqlite'}",
    )
    runner = ServiceRunner(databases=databases, workdir=tmp_path)
    runner.declare()
    yield runner
    runner.kill()


@pytest.fixture
def cli(
    sqlite_runner: ServiceRunner, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> InProcessCli:
    """The CLI in this process, with the environment the harness gives its CLI subprocesses;
    output is captured at the file descriptors, as a parent process would see it."""
    return InProcessCli(capture=capfd, cwd=tmp_path, env=harness_env(sqlite_runner))


# ---- the order tests are handed to parallel workers ------------------------------------------


# 25-45 s each with 4 workers: chaos (twenty SIGKILLs), fleets of workers, version change (waits
# out the stall), the benchmark; stuck workers (fleet/* and their broken variants) 40-100 s.
LONGEST = (
    *("chaos", "takeover", "version-change", "test_bench.py", "outage", "upgrade", "secrets"),
    *("fleet/", "-unbounded", "recheck-window"),
)


def _expected_cost(item: pytest.Item) -> int:
    """A coarse rank of how long a test runs: among the longest, a scenario, a service, neither."""
    if item.get_closest_marker("slow") is None:
        return 0
    if any(word in item.nodeid for word in LONGEST):
        return 3
    return 2 if item.nodeid.startswith("tests/scenarios/") else 1


@pytest.hookimpl(trylast=True)  # after -m and -k have deselected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest first, so no worker starts a long test when the others are done.

    Under `--dist load --maxschedchunk 1` each worker is first handed two consecutive tests and
    runs them in order; the quickest tests go second, so no long test waits behind another."""
    items.sort(key=_expected_cost, reverse=True)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers < 2 or len(items) < 4 * workers:
        return
    head, quickest = items[:workers], items[-workers:]
    rest = items[workers:-workers]
    items[:] = [x for pair in zip(head, quickest, strict=True) for x in pair] + rest
