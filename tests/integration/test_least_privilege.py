"""`dbos migrate` creates everything the service needs, so the service runs under a role that may
read and write rows but create nothing: the grants of docs/operations/security.md ("Least
privilege"), run as written."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import sql

from tests.helpers import ROOT, Databases, ServiceRunner, dbos_migrate

pytestmark = [pytest.mark.slow, pytest.mark.postgres]  # `dbos migrate` and the real service


@dataclass(frozen=True)
class Cluster:
    admin_url: str  # the owner: what `dbos migrate` runs as
    role_url: str  # the service's role, no DDL rights
    database: str
    role: str


def _url(base: str, database: str, user: str | None = None) -> str:
    url = sa.make_url(base).set(database=database)
    return (url.set(username=user) if user else url).render_as_string(hide_password=False)


SECURITY_PAGE = ROOT / "docs" / "operations" / "security.md"


def documented_grants(role: str, database: str) -> str:
    """The docs' least-privilege SQL, for this role and database."""
    page = SECURITY_PAGE.read_text()
    section = page.split("<!-- least-privilege:start -->")[1].split("<!-- least-privilege:end")[0]
    text = section.split("```sql")[1].split("```")[0]
    text = re.sub(r"\bpub_app\b", role, text)
    return re.sub(r"\bpublishers\b", database, text)


@pytest.fixture
def cluster(postgres_server: str) -> Iterator[Cluster]:
    """A fresh database (named so a crashed run's copy is dropped by the next) and the name of
    the role the docs' SQL creates; both dropped at the end."""
    suffix = uuid.uuid4().hex[:10]
    database, role = f"pubtest_{os.getpid()}_lp_{suffix}", f"pub_app_{suffix}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    try:
        yield Cluster(
            _url(postgres_server, database), _url(postgres_server, database, role), database, role
        )
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _privileges(cluster: Cluster) -> dict[str, bool]:
    checks = {
        "create on the database": "has_database_privilege(:role, :db, 'CREATE')",
        "create in public": "has_schema_privilege(:role, 'public', 'CREATE')",
        "create in dbos": "has_schema_privilege(:role, 'dbos', 'CREATE')",
        "insert into the ledger": "has_table_privilege(:role, 'public.ledger', 'INSERT')",
        "truncate the ledger": "has_table_privilege(:role, 'public.ledger', 'TRUNCATE')",
        "update workflows": "has_table_privilege(:role, 'dbos.workflow_status', 'UPDATE')",
        "insert checkpoints": "has_table_privilege(:role, 'dbos.datasource_outputs', 'INSERT')",
    }
    engine = sa.create_engine(cluster.admin_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            params = {"role": cluster.role, "db": cluster.database}
            return {
                name: bool(conn.scalar(sa.text(f"SELECT {q}"), params))
                for name, q in checks.items()
            }
    finally:
        engine.dispose()


def test_the_service_runs_exactly_under_a_role_that_cannot_create_anything(
    cluster: Cluster, tmp_path: Path
) -> None:
    migrated = dbos_migrate(cluster.admin_url)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    with psycopg.connect(cluster.admin_url, autocommit=True) as owner:
        owner.execute(documented_grants(cluster.role, cluster.database).encode())
    assert _privileges(cluster) == {
        "create on the database": False,
        "create in public": False,
        "create in dbos": False,
        "insert into the ledger": True,
        "truncate the ledger": False,
        "update workflows": True,
        "insert checkpoints": True,  # created by `dbos migrate`, not by the service at launch
    }
    service = ServiceRunner(
        Databases("postgres", cluster.role_url, cluster.role_url), workdir=tmp_path
    )
    try:
        service.start()
        service.publish("orders", 300, "least")
        assert service.wait_batch("least")["published"] == 300
        report = service.check({"least": 300})
        assert report.ok and report.ledger_rows == 300, report.violations
        assert "permission denied" not in "\n".join(p.read_text() for p in service.log_paths)
    finally:
        service.kill()
