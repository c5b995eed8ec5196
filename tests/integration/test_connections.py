"""The connection budget, counted at the operating system: a worker running chunks at its full
concurrency while a crowd of HTTP clients reads its status never holds more Postgres connections
than `[workers] connections`; a refused connection says why in one line."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from dbos_publishers._connections import FIXED
from tests.helpers import ServiceRunner

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize(
        "backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
    ),
]

POSTGRES_PORT = 5432
BUDGET = 24
READERS = 16  # far more HTTP clients at once than the API's read slots


def postgres_connections(pid: int) -> int:
    """Established TCP connections from process `pid` to the Postgres port, read from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            established = fields[3] == "01"
            if remote_port == POSTGRES_PORT and established and fields[9] in inodes:
                count += 1
    return count


def test_a_busy_worker_read_by_a_crowd_stays_within_its_connection_budget(
    service: ServiceRunner,
) -> None:
    service.declare(chunk_size=10, chunk_concurrency=8)
    base = service.enable_http()
    service.start(env={"APP_CONNECTIONS": str(BUDGET)})
    assert service.process is not None
    pid = service.process.pid
    service.publish("orders", 3000, "budget")
    stop = threading.Event()
    answers: list[int] = []

    def read() -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            while not stop.is_set():
                for path in ("/publishers", "/workers", "/metrics", "/batches/budget"):
                    answers.append(client.get(path).status_code)

    crowd = [threading.Thread(target=read) for _ in range(READERS)]
    for reader in crowd:
        reader.start()
    peak, deadline = 0, time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            peak = max(peak, postgres_connections(pid))
            with httpx.Client(base_url=base, timeout=60) as client:
                state = client.get("/batches/budget")
            if state.status_code == 200 and state.json()["status"] == "SUCCESS":
                break
            time.sleep(0.05)
    finally:
        stop.set()
        for reader in crowd:
            reader.join()
    assert state.json()["published"] == 3000
    assert peak <= BUDGET, f"{peak} connections held, budget {BUDGET}"
    assert peak > FIXED  # chunks and readers did run at once: the bound was tested, not idle
    assert answers.count(200) > READERS  # the crowd was served, some of it after waiting


def test_a_connection_refused_for_want_of_slots_says_so_in_one_line(
    service: ServiceRunner, postgres_server: str
) -> None:
    role = f"budget_limited_{os.getpid()}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        admin.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0')
    try:
        url = f"postgresql://{role}@127.0.0.1:{POSTGRES_PORT}/postgres"
        done = service.cli("status", DBOS_SYSTEM_DATABASE_URL=url, APP_DATABASE_URL=url)
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert "no connection slot left" in done.stderr
    assert "APP_CONNECTIONS" in done.stderr
