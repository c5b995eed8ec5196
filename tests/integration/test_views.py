"""The SQL views for people agree with the ledger after a crash, flag drift, and show stuck work;
the pgcli cookbook (docs/guides/reading-state.md) runs as written."""

from __future__ import annotations

import dataclasses
import re
import shlex
import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from dbos_publishers import _migrate as migrate
from dbos_publishers.store import _ledger as ledger
from dbos_publishers.store import _views as views
from dbos_publishers.store._database import short_lived_engine
from tests.helpers import ROOT, ServiceRunner
from tests.integration.test_crash_recovery import CHUNK, TOTAL, crash_then_restart

pytestmark = pytest.mark.slow  # the real service and CLI in subprocesses

COOKBOOK_PAGE = ROOT / "docs" / "guides" / "reading-state.md"
JOINS_DBOS = ("dbos.", "batch_workflows", "stuck_work", "stranded_work")
OLDER_THAN_STUCK_MS = (views.STUCK_MINUTES + 5) * 60 * 1000
DEADLINE_SEC = 120


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
    (progress,) = _rows(
        service,
        "SELECT batch_id, state, messages, published, percent, chunks, chunks_committed "
        "FROM batch_progress",
    )
    assert tuple(progress) == (
        "viewed",
        "active",
        TOTAL,
        TOTAL,
        100,
        TOTAL // CHUNK,
        TOTAL // CHUNK,
    )
    assert len(_rows(service, "SELECT * FROM recent_ledger")) == 100
    if service.databases.backend == "postgres":
        (batch,) = _rows(
            service,
            "SELECT batch_id, status, state, recoveries, messages, published, percent "
            "FROM batch_workflows",
        )
        # One crash, one restart: recovered once (DBOS's recovery_attempts says 2).
        assert tuple(batch) == ("viewed", "SUCCESS", "succeeded", 1, TOTAL, TOTAL, 100)
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
        assert _stuck(service) == []  # just submitted: not stuck yet
        _age(service, "created_at", "status = 'ENQUEUED'")
        assert _stuck(service) == [("batch-waiting", "ENQUEUED", "queue not moving")]


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])  # stuck_work joins DBOS's tables
def test_stuck_work_ignores_a_healthy_batch_and_names_one_that_stopped(
    service: ServiceRunner,
) -> None:
    """Chunks queued behind a running batch are not stuck, however long the batch runs; the same
    work once nothing moves any more is, each with its reason."""
    service.declare(chunk_size=10, chunk_concurrency=1)
    service.start(failpoints="chunk.start=delay(300)@every")
    service.publish("orders", 300, "long")
    _until(lambda: _count(service, "status = 'SUCCESS' AND name = 'publish_chunk'") >= 2)
    # As if the batch had run for ten minutes: queued chunks and the waiting batch are old.
    _age(service, "created_at", "status = 'ENQUEUED'")
    _age(service, "updated_at", "name = 'publish_batch'")
    assert _count(service, "status = 'ENQUEUED'") > 0
    assert _stuck(service) == []  # chunks keep completing: nothing is stuck
    service.kill()
    _age(service, "completed_at", "completed_at IS NOT NULL")  # ... and nothing since
    _age(service, "started_at_epoch_ms", "started_at_epoch_ms IS NOT NULL")
    _age(service, "updated_at", "status = 'PENDING'")
    reasons = {(status, reason) for _, status, reason in _stuck(service)}
    assert reasons == {("ENQUEUED", "queue not moving"), ("PENDING", "pending, idle")}
    assert ("batch-long", "PENDING", "pending, idle") in _stuck(service)


def _stuck(service: ServiceRunner) -> list[tuple[object, ...]]:
    return _rows(service, "SELECT workflow_id, status, reason FROM stuck_work ORDER BY 1")


def _age(service: ServiceRunner, column: str, where: str) -> None:
    """Move a DBOS timestamp (epoch ms) of the matching workflows into the past."""
    with short_lived_engine(service.settings().app_db) as engine, engine.begin() as conn:
        conn.execute(
            sa.text(f"UPDATE dbos.workflow_status SET {column} = {column} - :ms WHERE {where}"),
            {"ms": OLDER_THAN_STUCK_MS},
        )


def _count(service: ServiceRunner, where: str) -> int:
    (row,) = _rows(service, f"SELECT count(*) FROM dbos.workflow_status WHERE {where}")
    return int(str(row[0]))


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_SEC
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.1)


def test_the_cookbook_returns_rows_after_its_steps(service: ServiceRunner) -> None:
    """The cookbook's steps, in order, through the real CLI; then every query returns rows."""
    page = COOKBOOK_PAGE.read_text()
    steps = _between(page, "cookbook-steps")
    commands = [line for line in re.findall(r"^python -m app .*$", steps, re.M)]
    section = _between(page, "cookbook")
    blocks = [_without_comments(b) for b in re.findall(r"```sql\n(.*?)```", section, re.S)]
    queries = [q.strip() for block in blocks for q in block.split(";") if q.strip()]
    assert len(commands) >= 1 and len(queries) >= 8
    service.start()
    for command in commands:
        done = service.cli(*shlex.split(command)[3:])
        assert done.returncode == 0, (command, done.stderr)
    for query in queries:
        if service.databases.backend != "postgres" and any(n in query for n in JOINS_DBOS):
            continue  # these join DBOS's tables: Postgres with both in one database
        assert _rows(service, query), query


def _between(page: str, marker: str) -> str:
    return page.split(f"<!-- {marker}:start -->")[1].split(f"<!-- {marker}:end -->", maxsplit=1)[0]


def _without_comments(statement: str) -> str:
    return "\n".join(x for x in statement.splitlines() if not x.strip().startswith("--")).strip()


def _normalise(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    """SQLite returns booleans as 0/1."""
    return [tuple(bool(v) if i == len(r) - 1 else v for i, v in enumerate(r)) for r in rows]
