"""The benchmark runs end to end, tiny (no timing is asserted anywhere in the tests); bad
arguments are refused before anything runs (in this process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.bench.crew import extra_workers
from app.bench.modes import MODES
from app.bench.spec import Spec, bench_settings
from app.config import DatabaseUrl
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
    assert lines[0].split()[:4] == ["backend", "mode", "workers", "messages"]
    assert "vs 1w" in lines[0]
    results = json.loads(out.read_text())["results"]
    assert [(r["mode"], r["workers"], r["messages"]) for r in results] == [
        ("raw", 1, 300),
        ("exp7", 1, 12),
        ("per-message", 1, 12),
        ("batched", 1, 300),
    ]
    assert all(r["exact"] and r["violations"] == [] for r in results)
    assert all(r["peak_rss_mb"] > 0 and r["msg_per_s"] > 0 for r in results)
    assert all(r["ratio_to_one_worker"] is None for r in results)
    assert [r["executors"] for r in results] == [None, 1, 1, 1]
    assert (results[0]["commits_per_msg"] is None) == (backend == "sqlite")
    assert len(lines) == 1 + len(results)
    assert "note:" not in done.stderr


def _columns(line: str) -> dict[str, str]:
    """A table row by column (every value is one word; some of the header's names are two)."""
    names = ["backend", "mode", "workers", "messages", "msg/s", "p50", "p99", "rss"]
    names += ["commits/msg", "vs raw", "vs 1w", "exact"]
    return dict(zip(names, line.split(), strict=True))


@pytest.mark.slow
@pytest.mark.postgres
def test_bench_runs_dbos_modes_with_one_and_two_workers(
    postgres_server: str, tmp_path: Path
) -> None:
    """A DBOS mode with 1 worker, then 2 on the same Postgres, both workers running chunk
    workflows; raw (one client) once; the ratio to 1 worker in the table and the JSON. Batched
    only: per-message's pools, sized for 32 chunks at once, would crowd the Postgres the rest of
    the suite shares (the code path is the same for every mode)."""
    out = tmp_path / "bench.json"
    done = _bench(
        "--messages", "20000", "--backends", "postgres", "--modes", "raw,batched",
        "--workers", "2,1", "--postgres-url", postgres_server, "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    document = json.loads(out.read_text())
    assert document["workers"] == [1, 2]
    results = document["results"]
    assert [(r["mode"], r["workers"], r["messages"]) for r in results] == [
        ("raw", 1, 20000),
        ("batched", 1, 20000),
        ("batched", 2, 20000),
    ]
    assert all(r["exact"] and r["violations"] == [] for r in results)
    # Chunk workflows ran under as many distinct executors as there were workers.
    assert [r["executors"] for r in results] == [None, 1, 2]
    assert all(r["cpu_s"] > 0 for r in results[1:])
    one, two = results[1], results[2]
    assert one["ratio_to_one_worker"] is None
    assert two["ratio_to_one_worker"] == round(two["msg_per_s"] / one["msg_per_s"], 3)
    rows = [_columns(line) for line in done.stdout.strip().splitlines()[1:]]
    assert [(r["mode"], r["workers"]) for r in rows] == [
        (r["mode"], str(r["workers"])) for r in results
    ]
    assert [r["vs 1w"] for r in rows[:2]] == ["-", "-"]
    assert rows[2]["vs 1w"] == f"{two['ratio_to_one_worker']:.2f}x"
    assert all(r["exact"] == "yes" for r in rows)


@pytest.mark.slow
def test_bench_measures_sqlite_with_one_worker_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = _bench(
        "--messages", "300", "--publishers", "2", "--topics", "2", "--backends", "sqlite",
        "--modes", "batched", "--workers", "1,2", "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())["results"]
    assert [(r["mode"], r["workers"], r["executors"]) for r in results] == [("batched", 1, 1)]
    assert "SQLite takes one worker" in done.stderr
    assert len(done.stdout.strip().splitlines()) == 2


def _children() -> list[int]:
    """Processes whose parent is this one (read from /proc)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == os.getpid() and fields[0] not in {"Z", "X"}:
            pids.append(int(stat.parent.name))
    return pids


@pytest.mark.slow
def test_a_worker_that_dies_before_it_is_ready_is_named_and_nothing_is_left_running() -> None:
    mode = MODES["batched"]
    nowhere = DatabaseUrl.parse("postgresql://postgres@127.0.0.1:1/nothing", "db")
    spec = Spec("postgres", mode.name, 100, 1, 1, nowhere.raw, workers=3)
    with (
        pytest.raises(RuntimeError, match=r"bench worker bench-1 exited with code 1 before"),
        extra_workers(spec, bench_settings(spec, mode, nowhere, nowhere)),
    ):
        pytest.fail("the workers cannot be ready")
    assert _children() == []


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--modes", "turbo"], "--modes: choose from"),
        (["--backends", "oracle"], "--backends: choose from"),
        (["--messages", "10,-5"], "--messages must be a positive whole number, not '-5'"),
        (["--topics", "0"], "--topics must be a positive whole number"),
        (["--workers", "0"], "--workers must be a positive whole number, not '0'"),
        (["--workers", "x"], "--workers must be a positive whole number, not 'x'"),
        (["--workers", "1,"], "--workers must be a positive whole number, not ''"),
        (["--workers", "1,9"], "--workers: at most 8 (got 9)"),
    ],
)
def test_bench_refuses_bad_arguments(cli: InProcessCli, args: list[str], fragment: str) -> None:
    done = cli("bench", *args)
    assert done.returncode == 2
    assert fragment in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert done.stdout == "", "refused before the table header is printed"
