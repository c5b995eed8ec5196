"""The benchmark runs end to end, tiny (no timing is asserted anywhere in the tests); bad
arguments are refused before anything runs (in this process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_URL
from tests.helpers import ROOT, Backend, InProcessCli


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.slow
def test_bench_smoke_prints_a_table_and_writes_json(
    backend: Backend, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "postgres":
        request.getfixturevalue("postgres_server")
    out = tmp_path / "bench.json"
    done = _bench(
        "--messages", "300", "--per-message-messages", "12", "--publishers", "2",
        "--topics", "2", "--backends", backend, "--postgres-url", POSTGRES_URL,
        "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["backend", "mode", "messages"]
    results = json.loads(out.read_text())["results"]
    assert [(r["mode"], r["messages"]) for r in results] == [
        ("raw", 300),
        ("exp7", 12),
        ("per-message", 12),
        ("batched", 300),
    ]
    assert all(r["exact"] and r["violations"] == [] for r in results)
    assert all(r["peak_rss_mb"] > 0 and r["msg_per_s"] > 0 for r in results)
    assert (results[0]["commits_per_msg"] is None) == (backend == "sqlite")
    assert len(lines) == 1 + len(results)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--modes", "turbo"], "--modes: choose from"),
        (["--backends", "oracle"], "--backends: choose from"),
        (["--messages", "10,-5"], "--messages must be a positive whole number, not '-5'"),
        (["--topics", "0"], "--topics must be a positive whole number"),
    ],
)
def test_bench_refuses_bad_arguments(cli: InProcessCli, args: list[str], fragment: str) -> None:
    done = cli("bench", *args)
    assert done.returncode == 2
    assert fragment in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert done.stdout == "", "refused before the table header is printed"
