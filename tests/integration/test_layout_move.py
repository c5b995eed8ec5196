"""The move to the new layout (9e7709e): work the old layout (fb2f1a1, everything in the package
`app`) left PENDING when it was SIGKILLed mid-batch is recovered by the new service, exactly.

DBOS finds a workflow's code by registered names only (class "Publisher", workflows
"publish_batch"/"publish_chunk", the instance name), never by module path: the old service runs
from a `git archive` of fb2f1a1, the new one from the repository, on the same databases."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from dbos_publishers._config import DatabaseUrl
from dbos_publishers._ids import batch_workflow_id
from dbos_publishers.store import _ledger as ledger_store
from dbos_publishers.store._database import short_lived_engine
from dbos_publishers.store._ledger import message_id
from dbos_publishers.store._schema import ledger as ledger_table
from lab.scenarios.harness import SERVE
from lab.scratch import scratch_databases
from tests.helpers import ROOT, Backend, Databases, ServiceRunner

pytestmark = pytest.mark.slow  # two real services, a real SIGKILL

OLD_COMMIT = "fb2f1a1"  # the last commit of the old layout
BATCH = "layout"
TOTAL = 1000
CHUNK = 50
# Both services under one executor id: DBOS recovers an executor's PENDING work at launch.
EXECUTOR_ID = "layout-move"
# The old layout's class path: one publishers file for both services, as a deployment keeps it
# (the new service resolves the old path of the framework's own publishers to its new place).
OLD_CLASS = "app.publishers.events:EventPublisher"
RECOVERY_TIMEOUT_SEC = 120  # under load (2 cores shared with other test runs)
TERMINAL = ("SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")


@pytest.fixture
def layout_databases(
    backend: Backend, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Databases]:
    """Empty databases the old service migrates itself: two SQLite files, or a fresh Postgres
    database (dropped afterwards), named so conftest drops it if this process dies."""
    if backend == "sqlite":
        yield Databases(
            backend="sqlite",
            system_url=f"sqlite:///{tmp_path / 'sys.sqlite'}",
            app_url=f"sqlite:///{tmp_path / 'app.sqlite'}",
        )
        return
    server: str = request.getfixturevalue("postgres_server")  # under CI=true: fails, never skips
    with scratch_databases("postgres", server, f"pubtest_{os.getpid()}_layout") as (url, _):
        plain = url.sqlalchemy_url.set(drivername="postgresql").render_as_string(False)
        yield Databases(backend="postgres", system_url=plain, app_url=plain)


def _old_tree(destination: Path) -> Path:
    """fb2f1a1 as `git archive` gives it (no work tree, no build artefacts)."""
    git, tar = shutil.which("git"), shutil.which("tar")
    if git is None or tar is None:
        pytest.fail("this test extracts the old layout with git and tar: install both")
    known = subprocess.run(
        [git, "-C", str(ROOT), "cat-file", "-e", f"{OLD_COMMIT}^{{commit}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if known.returncode != 0:
        pytest.fail(
            f"commit {OLD_COMMIT} (the last of the old layout) is not in {ROOT}: this test needs "
            f"the history (a full clone, not --depth 1): {known.stderr.strip()}"
        )
    destination.mkdir()
    archive = subprocess.Popen(
        [git, "-C", str(ROOT), "archive", OLD_COMMIT], stdout=subprocess.PIPE
    )
    assert archive.stdout is not None
    subprocess.run([tar, "-x", "-C", str(destination)], stdin=archive.stdout, check=True)
    archive.stdout.close()
    assert archive.wait(timeout=60) == 0, f"git archive {OLD_COMMIT} failed"
    return destination


def _publishers_file(path: Path) -> Path:
    path.write_text(
        "[queues]\nchunk_concurrency = 2\n\n"
        f'[[publishers]]\nname = "orders"\nclass = "{OLD_CLASS}"\nchunk_size = {CHUNK}\n'
    )
    return path


def _harness(databases: Databases, workdir: Path, publishers: Path, **env: str) -> ServiceRunner:
    workdir.mkdir(exist_ok=True)
    runner = ServiceRunner(
        databases=databases, workdir=workdir, extra_env={"APP_EXECUTOR_ID": EXECUTOR_ID, **env}
    )
    runner.publishers_file = publishers
    return runner


def _assert_old_code_only(old: ServiceRunner, tree: Path) -> None:
    """The old service's interpreter imports `app` (and the old class path) from the old tree,
    and the repository is not on its path (the venv's editable install must not shadow it)."""
    code = (
        "import app.publishers.events as e, json, os, sys; "
        "print(json.dumps([e.__file__, [os.path.abspath(p) for p in sys.path]]))"
    )
    probe = subprocess.run(
        [sys.executable, "-c", code],
        cwd=old.workdir,
        env=old.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    module_file, path = json.loads(probe.stdout)
    assert Path(module_file).resolve().is_relative_to(tree.resolve()), module_file
    assert str(ROOT.resolve()) not in {str(Path(p).resolve()) for p in path}, path


def _serve(runner: ServiceRunner, cwd: Path, failpoints: str = "") -> None:
    """`python -m app serve` in `cwd` with the harness's environment, in a session of its own
    (its process group is killed whatever the test does); waits until it is ready."""
    runner.starts += 1
    log_path = runner.workdir / f"serve-{runner.starts}.log"
    runner.log_paths.append(log_path)
    with log_path.open("wb") as out:
        runner.process = subprocess.Popen(
            SERVE,
            cwd=cwd,
            env=runner.env(APP_FAILPOINTS=failpoints),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    runner.wait_for_event("service_ready")


def _kill_group(runner: ServiceRunner) -> None:
    process = runner.process
    if process is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # the session leader's pid is its group's id
    runner.kill()  # anything that left the group, and the reaping
    process.wait(timeout=30)


def _workflow_table(system_db: DatabaseUrl) -> str:
    return "dbos.workflow_status" if system_db.backend == "postgresql" else "workflow_status"


def _workflows(runner: ServiceRunner) -> dict[str, str]:
    """Every workflow in DBOS's table: id -> status."""
    query = f"SELECT workflow_uuid, status FROM {_workflow_table(runner.system_db)}"
    with short_lived_engine(runner.system_db) as engine, engine.connect() as conn:
        return {str(wid): str(status) for wid, status in conn.execute(sa.text(query))}


def _ledger_rows(runner: ServiceRunner) -> dict[str, tuple[object, ...]]:
    """The batch's ledger rows: message id -> (position, chunk workflow, published at)."""
    query = sa.select(
        ledger_table.c.message_id,
        ledger_table.c.position,
        ledger_table.c.chunk_workflow_id,
        ledger_table.c.published_at,
    ).where(ledger_table.c.batch_id == BATCH)
    with short_lived_engine(runner.app_db) as engine, engine.connect() as conn:
        return {str(row[0]): tuple(row[1:]) for row in conn.execute(query)}


def _ledger_count(runner: ServiceRunner) -> tuple[int, int]:
    """(rows, distinct message ids) of the batch in the ledger, counted by the database."""
    query = sa.select(sa.func.count(), sa.func.count(sa.distinct(ledger_table.c.message_id))).where(
        ledger_table.c.batch_id == BATCH
    )
    with short_lived_engine(runner.app_db) as engine, engine.connect() as conn:
        rows, distinct = conn.execute(query).one()
    return int(rows), int(distinct)


def _counters(runner: ServiceRunner) -> tuple[int | None, int | None]:
    """(local counter orders/default, global counter default), folded or not (the views)."""
    with short_lived_engine(runner.app_db) as engine, engine.connect() as conn:
        local = {
            (r.publisher, r.topic): r.local_counter for r in ledger_store.publisher_counts(conn)
        }
        total = {r.topic: r.global_counter for r in ledger_store.topic_counts(conn)}
    return local.get(("orders", "default")), total.get("default")


def _wait_terminal(runner: ServiceRunner, workflow_id: str, timeout: float) -> str:
    """Poll DBOS's table until the workflow ends; fail with the service's log if the service
    exits first or the deadline passes."""
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = _workflows(runner).get(workflow_id)
        if status is not None and status in TERMINAL:
            return status
        if not runner.running():
            code = runner.process.returncode if runner.process else None
            pytest.fail(
                f"the new service exited ({code}) with {workflow_id} {status}:\n{runner.tail()}"
            )
        time.sleep(0.2)
    pytest.fail(f"{workflow_id} still {status} after {timeout}s:\n{runner.tail(80)}")


def test_pending_work_of_the_old_layout_recovers_on_the_new_one(
    layout_databases: Databases, tmp_path: Path
) -> None:
    tree = _old_tree(tmp_path / "old")
    publishers = _publishers_file(tmp_path / "publishers.toml")
    # PYTHONPATH is the old tree alone, whatever this process was given.
    old = _harness(layout_databases, tree, publishers, PYTHONPATH=str(tree))
    new = _harness(layout_databases, tmp_path / "new", publishers)
    _assert_old_code_only(old, tree)
    try:
        # The old layout: it migrates both databases at start, takes the batch, dies by SIGKILL
        # after its fifth chunk commit.
        _serve(old, tree, failpoints="chunk.after_commit=crash@5")
        done = old.cli("publish", "orders", "--count", str(TOTAL), "--batch-id", BATCH)
        assert done.returncode == 0, done.stderr
        assert old.wait_exit() == -signal.SIGKILL, old.tail()
        at_crash = _ledger_rows(old)
        assert 0 < len(at_crash) < TOTAL, "the crash must land mid-batch"
        assert _workflows(old)[batch_workflow_id(BATCH)] == "PENDING", old.tail()

        # The new layout, from the repository, same databases, same executor id, no failpoints.
        _serve(new, ROOT)
        status = _wait_terminal(new, batch_workflow_id(BATCH), RECOVERY_TIMEOUT_SEC)
        assert status == "SUCCESS", new.tail(80)

        assert _ledger_count(new) == (TOTAL, TOTAL)
        rows = _ledger_rows(new)
        assert set(rows) == {message_id(BATCH, position) for position in range(TOTAL)}
        assert {k: rows[k] for k in at_crash} == at_crash, "the old rows were rewritten"
        assert _counters(new) == (TOTAL, TOTAL)
        report = new.check({BATCH: TOTAL})
        assert report.ok, report.violations
        assert report.ledger_rows == TOTAL

        outcome, summary = new.batch_outcome(BATCH)
        assert outcome == "SUCCESS"
        assert summary is not None
        assert (summary["published"], summary["failed"]) == (TOTAL, 0)
        statuses = _workflows(new)
        assert [wid for wid, s in statuses.items() if s == "ERROR"] == []
        family = {s for wid, s in statuses.items() if wid.startswith(batch_workflow_id(BATCH))}
        assert family == {"SUCCESS"}, statuses

        assert new.stop() == 0, new.tail()
    finally:
        _kill_group(old)
        _kill_group(new)
