"""schemathesis against the served OpenAPI spec: generated requests, real HTTP, real databases.

The app runs in this process on loopback without DBOS launched, so accepted batches wait in the
queue instead of being published (a generated count may be a hundred million)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbos import DBOSClient

from dbos_publishers import _migrate as migrate
from dbos_publishers.ops import _api as api
from tests.helpers import ServiceRunner

pytestmark = pytest.mark.slow  # schemathesis runs as a subprocess


@pytest.fixture
def served_api(service: ServiceRunner) -> Iterator[str]:
    settings = service.settings()
    migrate.upgrade_all(settings)
    client = DBOSClient(system_database_url=settings.system_db.raw)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = api.serve_in_thread(api.create_app(settings, client, token=None), "127.0.0.1", port)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    client.destroy()


def test_api_conforms_to_its_openapi_spec(served_api: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{served_api}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            "30",
            "--seed",
            "1",
            "--no-color",
        ],
        cwd=tmp_path,  # its cache (.schemathesis/) stays out of the project
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
