"""The SQL views for people agree with the ledger after a crash, flag drift, and show stuck work;
the README's pgcli cookbook runs as written."""

from __future__ import annotations

import dataclasses
import re

import pytest
import sqlalchemy as sa

from app import ledger, migrate
from app.database import short_lived_engine
from tests.helpers import ROOT, ServiceRunner
from tests.integration.test_crash_recovery import CHUNK, TOTAL, crash_then_restart

pytestmark = pytest.mark.slow  # the real service and CLI in subprocesses

JOINS_DBOS = ("dbos.", "batch_workflows", "stuck_work")


def _rows(service: ServiceRunner, sql: str) -> list[tuple[object, ...]]:
    with short_lived_engine(service.settings().app_db) as engine, engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(sql))]


def test_views_agree_with_the_ledger_after_a_crash(service: ServiceRunner) -> None:
    service.declare(chunk_size=CHUNK, chunk_concurrency=2)
    crash_then_restart(service, "chunk.before_commit=crash@5", "viewed")
    service.wait_batch("viewed")
    with short_lived_engine(service.settings().app_db) as engine, engine.connect() as conn:
        expected_locals = [(*dataclasses.astuple(r), True) for r in ledger.publisher_counts(conn)]
        expected_topics = [(*dataclasses.astuple(r), True) for r in ledger.topic_counts(conn)]
    assert _normalise(_rows(service, "SELECT * FROM publisher_counters")) == expected_locals
    assert _normalise(_rows(service, "SELECT * FROM topic_counters")) == expected_topics
    (progress,) = _rows(service, "SELECT batch_id, published, chunks_committed FROM batch_progress")
    assert tuple(progress) == ("viewed", TOTAL, TOTAL // CHUNK)
    assert len(_rows(service, "SELECT * FROM recent_ledger")) == 100
    if service.databases.backend == "postgres":
        (batch,) = _rows(service, "SELECT batch_id, status, published FROM batch_workflows")
        assert tuple(batch) == ("viewed", "SUCCESS", TOTAL)
        assert _rows(service, "SELECT * FROM stuck_work") == []


def test_views_flag_drift_and_stuck_work(service: ServiceRunner) -> None:
    migrate.upgrade_all(service.settings())
    service.publish("orders", 30, "waiting")  # no service running: it stays ENQUEUED
    with short_lived_engine(service.settings().app_db) as engine, engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO local_counters VALUES ('orders', 'default', 7)"))
        conn.execute(sa.text("INSERT INTO global_counters VALUES ('default', 7)"))
    assert _normalise(_rows(service, "SELECT * FROM publisher_counters")) == [
        ("orders", "default", 7, 0, False)
    ]
    assert _normalise(_rows(service, "SELECT * FROM topic_counters")) == [
        ("default", 7, 7, 0, False)
    ]
    if service.databases.backend == "postgres":
        stuck = _rows(service, "SELECT workflow_id, status, publisher FROM stuck_work")
        assert [tuple(r) for r in stuck] == [("batch-waiting", "ENQUEUED", "orders")]


def test_the_readme_cookbook_runs_as_written(service: ServiceRunner) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("<!-- cookbook:start -->")[1].split("<!-- cookbook:end -->")[0]
    blocks = [_without_comments(b) for b in re.findall(r"```sql\n(.*?)```", section, re.S)]
    queries = [q.strip() for block in blocks for q in block.split(";") if q.strip()]
    assert len(queries) >= 6
    service.start()
    service.publish("orders", 60, "cookbook")
    service.wait_batch("cookbook")
    for query in queries:
        if service.databases.backend != "postgres" and any(n in query for n in JOINS_DBOS):
            continue  # these join DBOS's tables: Postgres with both in one database
        _rows(service, query)


def _without_comments(statement: str) -> str:
    return "\n".join(x for x in statement.splitlines() if not x.strip().startswith("--")).strip()


def _normalise(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    """SQLite returns booleans as 0/1."""
    return [tuple(bool(v) if i == len(r) - 1 else v for i, v in enumerate(r)) for r in rows]
