"""Fixtures: the service built in this process on SQLite files (no subprocess) by the public
harness (dbos_publishers.testing), a fresh DBOS for each test, and the API served in a thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers import _failpoints as failpoints
from dbos_publishers import _migrate as migrate
from dbos_publishers._config import Settings
from dbos_publishers.ops._api import create_app, serve_in_thread
from dbos_publishers.testing import InProcessService, LedgerState, start_service
from tests.helpers import process_state_restored, sqlite_settings

__all__ = ["Api", "InProcessService", "LedgerState", "StartService", "served_api"]

StartService = Callable[..., InProcessService]


@pytest.fixture(name="start_service")
def start_service_fixture(tmp_path: Path) -> Iterator[StartService]:
    """Build and launch the service in this process from a publishers file's [[publishers]]
    entries (queue tuning is added); shut down, with the publishers closed, after the test."""
    started: list[InProcessService] = []

    def start(publishers: str, *, failpoint_spec: str = "") -> InProcessService:
        assert not started, "one service per test"
        service = start_service(tmp_path, publishers, failpoints=failpoint_spec)
        started.append(service)
        return service

    with process_state_restored():
        try:
            yield start
        finally:
            for service in started:
                service.stop()
            failpoints.arm("")


Api = tuple[httpx.Client, Settings]


@contextmanager
def served_api(tmp_path: Path, publishers: str, token: str | None = None) -> Iterator[Api]:
    """The HTTP API served by uvicorn in a thread of this process on SQLite files (migrated, no
    DBOS launched: submitted batches wait ENQUEUED), and a client that sends the token."""
    path = tmp_path / "publishers.toml"
    path.write_text(publishers)
    settings = sqlite_settings(tmp_path, path)
    migrate.upgrade_all(settings)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with dbos_gateway.client(settings.system_db) as client:
        server = serve_in_thread(create_app(settings, client, token=token), "127.0.0.1", 0)
        port = server.servers[0].sockets[0].getsockname()[1]
        base_url = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base_url, timeout=30, headers=headers) as http:
                yield http, settings
        finally:
            server.should_exit = True
