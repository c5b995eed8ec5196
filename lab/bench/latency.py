"""Latency of one small batch on an idle, running service: the real service as a subprocess (the
shipped publishers.toml, so its defaults), batches of 100 messages submitted one at a time through
the product's submit path, each timed until its rows are committed and until its workflow is
SUCCESS; and the wall time of `python -m app publish ... --wait` end to end."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from dbos import DBOSClient

from dbos_publishers import _batches as batches
from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers._config import DatabaseUrl, Settings
from dbos_publishers.store import _ledger as ledger
from dbos_publishers.store._database import make_engine
from lab.paths import REFERENCE_PUBLISHERS_FILE, REPO_ROOT
from lab.scratch import scratch_databases

BATCH_MESSAGES = 100
PUBLISHER = "orders"  # declared in the shipped publishers.toml
CLI_RUNS = 3
READY_TIMEOUT_SEC = 120.0
BATCH_TIMEOUT_SEC = 120.0
POLL_SEC = 0.002
PUBLISH = [sys.executable, "-m", "app", "publish", PUBLISHER]


def service_env(system_db: DatabaseUrl, app_db: DatabaseUrl) -> dict[str, str]:
    return {
        **os.environ,
        "DBOS_SYSTEM_DATABASE_URL": system_db.raw,
        "APP_DATABASE_URL": app_db.raw,
        "APP_PUBLISHERS_FILE": str(REFERENCE_PUBLISHERS_FILE),
        "APP_LOG_FORMAT": "json",
        "APP_FAILPOINTS": "",
        "APP_HTTP_PORT": "off",
    }


@contextlib.contextmanager
def running_service(env: dict[str, str], log: IO[str]) -> Iterator[subprocess.Popen[str]]:
    """`python -m app serve`, ready (it logged `service_ready`); stopped by SIGTERM afterwards."""
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve"],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SEC
        while '"service_ready"' not in Path(log.name).read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = Path(log.name).read_text(errors="replace")[-300:]
                raise RuntimeError(f"the service did not start for the latency run: {tail}")
            time.sleep(0.05)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _until(check: Any, what: str) -> float:
    """Poll `check()` until true; the monotonic time it became true."""
    deadline = time.monotonic() + BATCH_TIMEOUT_SEC
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"latency run: {what} not done in {BATCH_TIMEOUT_SEC:.0f} s")
        time.sleep(POLL_SEC)
    return time.monotonic()


def one_batch(
    settings: Settings, client: DBOSClient, conn: sa.Connection, batch_id: str
) -> tuple[float, float]:
    """(ms to rows committed, ms to workflow SUCCESS) of one batch submitted now."""
    submission = batches.validate(
        settings, PUBLISHER, count=BATCH_MESSAGES, topic="latency", batch_id=batch_id
    )
    start = time.monotonic()
    batches.enqueue(client, submission)
    committed = _until(
        lambda: ledger.batch_published(conn, batch_id) == BATCH_MESSAGES, "rows committed"
    )

    def succeeded() -> bool:
        found = dbos_gateway.workflows(client, [submission.workflow_id])
        if found and found[0].status in dbos_gateway.DEAD_STATUSES:
            raise RuntimeError(f"latency batch {batch_id} ended {found[0].status}")
        return bool(found) and found[0].status == "SUCCESS"

    success = _until(succeeded, "workflow SUCCESS")
    return (committed - start) * 1000, (success - start) * 1000


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: with 20 samples, p99 is the slowest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def cli_wall_seconds(env: dict[str, str], batch_id: str) -> float:
    start = time.monotonic()
    done = subprocess.run(
        [*PUBLISH, "--count", str(BATCH_MESSAGES), "--batch-id", batch_id, "--wait"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BATCH_TIMEOUT_SEC,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"latency run: publish --wait exited {done.returncode}: {done.stderr}")
    return time.monotonic() - start


def measure(backend: str, postgres_url: str, count: int) -> dict[str, Any]:
    with (
        scratch_databases(backend, postgres_url, "benchlat") as (system_db, app_db),
        tempfile.NamedTemporaryFile("w+", prefix="bench-serve-", suffix=".log") as log,
    ):
        env = service_env(system_db, app_db)
        settings = Settings.from_env(env)
        with running_service(env, log), dbos_gateway.client(system_db) as client:
            engine = make_engine(app_db, pool_size=1, max_overflow=0)
            try:
                with engine.connect() as connection:
                    conn = connection.execution_options(isolation_level="AUTOCOMMIT")
                    one_batch(settings, client, conn, "latency-warm-up")  # queue workers start
                    timed = [one_batch(settings, client, conn, f"lat-{i}") for i in range(count)]
            finally:
                engine.dispose()
            walls = [cli_wall_seconds(env, f"lat-cli-{i}") for i in range(CLI_RUNS)]
    committed, success = [c for c, _ in timed], [s for _, s in timed]
    return {
        "batches": count,
        "messages_per_batch": BATCH_MESSAGES,
        "committed_p50_ms": round(percentile(committed, 0.5), 1),
        "committed_p99_ms": round(percentile(committed, 0.99), 1),
        "success_p50_ms": round(percentile(success, 0.5), 1),
        "success_p99_ms": round(percentile(success, 0.99), 1),
        "publish_wait_s": [round(w, 2) for w in walls],
        "publish_wait_median_s": round(sorted(walls)[len(walls) // 2], 2),
    }


def format_line(backend: str, found: dict[str, Any]) -> str:
    return (
        f"latency {backend}: {found['batches']} batches of {found['messages_per_batch']} on an "
        f"idle service: submit-to-committed p50 {found['committed_p50_ms']:.0f} ms, p99 "
        f"{found['committed_p99_ms']:.0f} ms; submit-to-SUCCESS p50 {found['success_p50_ms']:.0f} "
        f"ms, p99 {found['success_p99_ms']:.0f} ms; `publish --wait` wall "
        f"{found['publish_wait_median_s']:.2f} s (median of {json.dumps(found['publish_wait_s'])})"
    )
