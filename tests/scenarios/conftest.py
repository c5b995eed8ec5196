"""Scenarios run through the real CLI, each against its own scratch databases."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import POSTGRES_URL
from tests.helpers import ROOT, Backend

SCENARIO_TIMEOUT_SEC = 900


def run_scenario(backend: Backend, *args: str) -> tuple[int, list[dict[str, Any]]]:
    """`python -m app scenario run ... --json`: the exit code and the reports."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "app", "scenario", "run", *args),
            *("--backend", backend, "--postgres-url", POSTGRES_URL, "--json"),
        ],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "CI": "true"},
        capture_output=True,
        text=True,
        timeout=SCENARIO_TIMEOUT_SEC,
        check=False,
    )
    assert done.stdout.strip(), done.stderr
    reports: list[dict[str, Any]] = json.loads(done.stdout)
    return done.returncode, reports


@pytest.fixture
def scenario_backend(backend: Backend, request: pytest.FixtureRequest) -> Backend:
    """The backend, with Postgres required under CI=true and skipped elsewhere when down."""
    if backend == "postgres":
        request.getfixturevalue("postgres_server")
    return backend
