"""Scenarios run through the real CLI, each against its own scratch databases."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import POSTGRES_URL
from tests.helpers import ROOT, Backend

SCENARIO_TIMEOUT_SEC = 600
# pytest-timeout's limit for one scenario test: past the subprocess's own, so that one names it.
TEST_TIMEOUT_SEC = SCENARIO_TIMEOUT_SEC + 60


def run_scenario(backend: Backend, *args: str) -> tuple[int, list[dict[str, Any]]]:
    """`python -m app scenario run ... --json`: the exit code and the reports."""
    with subprocess.Popen(
        [
            *(sys.executable, "-m", "lab", "scenario", "run", *args),
            *("--backend", backend, "--postgres-url", POSTGRES_URL, "--json"),
        ],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "CI": "true"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the lab's services too, so a timeout can kill them all
    ) as lab:
        try:
            stdout, stderr = lab.communicate(timeout=SCENARIO_TIMEOUT_SEC)
        finally:  # a timeout, or pytest-timeout interrupting: leave no service running
            with contextlib.suppress(ProcessLookupError):
                os.killpg(lab.pid, signal.SIGKILL)
    assert stdout.strip(), stderr
    reports: list[dict[str, Any]] = json.loads(stdout)
    return lab.returncode, reports


@pytest.fixture
def scenario_backend(backend: Backend, request: pytest.FixtureRequest) -> Backend:
    """The backend, with Postgres required under CI=true and skipped elsewhere when down."""
    if backend == "postgres":
        request.getfixturevalue("postgres_server")
    return backend
