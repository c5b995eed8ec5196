"""Fixtures: a real SQLite file or a fresh Postgres database per test, and a service subprocess."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from dbos import DBOS

from app import migrate
from app.config import DatabaseUrl
from tests.helpers import Backend, Databases, ServiceRunner

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() == "true"
TEMPLATE_DB = f"pubtest_template_{os.getpid()}"


def _postgres_reachable() -> str | None:
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            return None
    except psycopg.OperationalError as exc:
        return str(exc).strip().splitlines()[0]


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(POSTGRES_URL, autocommit=True)


def _db_url(name: str) -> str:
    return POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"


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
    """Migrate one template database per run (app tables and DBOS tables); tests copy it."""
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}"')
        admin.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    url = _db_url(TEMPLATE_DB)
    DBOS.migrate(url)  # first, as `dbos migrate` does: some views join DBOS's tables
    migrate.upgrade(DatabaseUrl.parse(url, "template"))
    yield TEMPLATE_DB
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')


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
    name = f"pubtest_{uuid.uuid4().hex[:12]}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    url = _db_url(name)
    yield Databases(backend="postgres", system_url=url, app_url=url)
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def service(databases: Databases, tmp_path: Path) -> Iterator[ServiceRunner]:
    runner = ServiceRunner(databases=databases, workdir=tmp_path)
    yield runner
    runner.kill()
