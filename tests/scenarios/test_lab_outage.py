"""The crash lab under a database outage: its --json output stays valid JSON and the report says
what happened, whatever the logs do (they go to stderr)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from urllib.parse import urlsplit

import pytest

from lab.scenarios.proxy import CuttableProxy
from tests.conftest import POSTGRES_URL
from tests.helpers import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
OUTAGE_SEC = 8.0  # overlaps a phase in which the lab reads the database, on a loaded box too
DEADLINE_SEC = 240


def test_a_database_outage_mid_scenario_is_reported_and_json_stays_valid(
    postgres_server: str,
) -> None:
    target = urlsplit(POSTGRES_URL)
    with CuttableProxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
        url = POSTGRES_URL.replace(
            target.netloc, f"{target.username or 'postgres'}@127.0.0.1:{proxy.port}"
        )
        lab = subprocess.Popen(
            [
                *(sys.executable, "-m", "lab", "scenario", "run", "chunk.before_commit/crash"),
                *("--backend", "postgres", "--postgres-url", url, "--json"),
            ],
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", "CI": "true"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + DEADLINE_SEC
        while proxy.accepted < 10 and lab.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the service is up and working once it holds its connections
        proxy.cut()
        time.sleep(OUTAGE_SEC)  # the outage itself, not a wait for a condition
        proxy.restore()
        out, err = lab.communicate(timeout=DEADLINE_SEC)
    (report,) = json.loads(out)  # nothing but the report on stdout
    assert report["infrastructure"], err[-2000:]
    assert "unreachable" in report["infrastructure"][0]
