"""The benchmark runs end to end, tiny (no timing is asserted anywhere in the tests); bad
arguments are refused before anything runs (in this process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dbos_publishers._config import DatabaseUrl
from lab.bench.crew import extra_workers
from lab.bench.modes import MODES, PER_MESSAGE_CONCURRENCY
from lab.bench.spec import Spec, bench_settings, chunks
from tests.conftest import POSTGRES_URL
from tests.helpers import ROOT, Backend, InProcessCli


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


ALL_MODES = [
    "ceiling",
    "dbos-raw",
    "batched",
    "batched-shipped",
    "dbos-raw-per-message",
    "per-message",
    "exp7",
]


@pytest.mark.slow
def test_bench_smoke_prints_a_table_and_writes_json(
    backend: Backend, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Every mode once, tiny, each checked `exact`; the ratios read against the references of
    the same run; the latency of an idle service; the plan on stderr before anything runs."""
    if backend == "postgres":
        request.getfixturevalue("postgres_server")
    out = tmp_path / "bench.json"
    done = _bench(
        "--messages", "300", "--per-message-messages", "12", "--publishers", "2",
        "--topics", "2", "--backends", backend, "--postgres-url", POSTGRES_URL,
        "--latency-batches", "2", "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].split()[:4] == ["backend", "mode", "conc", "workers"]
    document = json.loads(out.read_text())
    results = document["results"]
    assert [(r["mode"], r["messages"]) for r in results] == [
        (mode, 12 if mode in {"dbos-raw-per-message", "per-message", "exp7"} else 300)
        for mode in ALL_MODES
    ]
    by_mode = {r["mode"]: r for r in results}
    assert all(r["exact"] and r["violations"] == [] for r in results)
    assert all(r["peak_rss_mb"] > 0 and r["msg_per_s"] > 0 for r in results)
    assert all(r["cpu_s"] > 0 for r in results[1:])  # the tiny ceiling may round to 0.0
    assert all(r["ratio_to_one_worker"] is None for r in results)
    assert [r["executors"] for r in results] == [None, 1, 1, 1, 1, 1, 1]
    ceiling, raw = by_mode["ceiling"]["msg_per_s"], by_mode["dbos-raw"]["msg_per_s"]
    batched = by_mode["batched"]
    assert batched["ratio_to_ceiling"] == round(batched["msg_per_s"] / ceiling, 3)
    assert batched["ratio_to_dbos_raw"] == round(batched["msg_per_s"] / raw, 3)
    shipped = by_mode["batched-shipped"]  # the shipped chunk size, read against the bench's
    assert shipped["ratio_to_batched"] == round(shipped["msg_per_s"] / batched["msg_per_s"], 3)
    assert "ratio_to_batched" not in batched
    # In the JSON, the ceiling is read against dbos-raw too (measured after it); not SQLite's
    # one-connection ceiling, which has no dbos-raw of its concurrency.
    expected = round(ceiling / raw, 3) if backend == "postgres" else None
    assert by_mode["ceiling"]["ratio_to_dbos_raw"] == expected
    per_message = by_mode["per-message"]
    assert per_message["ratio_to_ceiling"] is None
    assert per_message["ratio_to_dbos_raw"] == round(
        per_message["msg_per_s"] / by_mode["dbos-raw-per-message"]["msg_per_s"], 3
    )
    sqlite_ceiling = 1 if backend == "sqlite" else 4
    per_message = PER_MESSAGE_CONCURRENCY  # the per-message shapes keep their own
    assert [r["chunk_concurrency"] for r in results] == [
        *(sqlite_ceiling, 4, 4, 4),
        *(per_message, per_message, 10),
    ]
    # Lock waits are sampled on Postgres for the chunk-sized rows only.
    sampled = [r["mode"] for r in results if r["locks"] is not None]
    chunked = ["ceiling", "dbos-raw", "batched", "batched-shipped"]
    assert sampled == (chunked if backend == "postgres" else [])
    assert (results[0]["commits_per_msg"] is None) == (backend == "sqlite")
    found = document["latency"][backend]
    assert found["batches"] == 2 and len(found["publish_wait_s"]) == 3
    assert 0 < found["committed_p50_ms"] <= found["success_p99_ms"]
    assert len(lines) == 1 + len(results) + 1 and lines[-1].startswith(f"latency {backend}:")
    assert done.stderr.index("bench: 7 measurements") < done.stderr.index("estimated total")
    assert "note:" in done.stderr if backend == "sqlite" else "note:" not in done.stderr


def _columns(line: str) -> dict[str, str]:
    """A table row by column (every value is one word)."""
    names = ["backend", "mode", "conc", "workers", "messages", "msg/s", "rss", "cpu_s"]
    names += ["commits/msg", "vs_ceiling", "vs_dbos_raw", "vs_batched", "vs_1w", "lock_wait"]
    names += ["ctr_wait"]
    names += ["exact"]
    return dict(zip(names, line.split(), strict=True))


@pytest.mark.slow
@pytest.mark.postgres
def test_bench_runs_chunk_modes_at_two_concurrencies_and_two_workers(
    postgres_server: str, tmp_path: Path
) -> None:
    """The ceiling once per concurrency (one worker), batched with 1 then 2 workers; every row
    read against the ceiling of its own concurrency (dbos-raw's ratios: tests/unit). Chunk
    modes only: per-message's pools, sized for 16 chunks at once, would crowd the Postgres the
    rest of the suite shares.

    96,000 messages are 8 batches of 6 chunks: 48 chunks, three times the 16 chunk workflows one
    worker takes at N = 8 (chunk_prefetch 2), so the second worker finds chunks waiting. With
    4,000 (8 chunks) the first worker could take them all at N = 8, and under load it did."""
    messages, publishers, topics, widest, batched = 96_000, 4, 2, 8, MODES["batched"]
    spec = Spec("postgres", "batched", messages, publishers, topics, postgres_url="")
    assert len(list(chunks(spec, batched.chunk_size))) >= 3 * widest * batched.chunk_prefetch
    out = tmp_path / "bench.json"
    done = _bench(
        "--messages", str(messages), "--publishers", str(publishers), "--topics", str(topics),
        "--backends", "postgres", "--modes", "batched,ceiling",
        "--workers", "2,1", "--chunk-concurrency", f"{widest},2", "--latency-batches", "0",
        "--postgres-url", postgres_server, "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    document = json.loads(out.read_text())
    assert document["workers"] == [1, 2] and document["chunk_concurrency"] == [2, 8]
    assert document["latency"] == {}
    results = document["results"]
    expected = [("ceiling", 1), ("batched", 1), ("batched", 2)]
    assert [(r["chunk_concurrency"], r["mode"], r["workers"]) for r in results] == [
        (conc, mode, workers) for conc in (2, 8) for mode, workers in expected
    ]
    assert all(r["exact"] and r["violations"] == [] for r in results)
    # Chunk workflows ran under as many distinct executors as there were workers.
    assert [r["executors"] for r in results] == [None, 1, 2] * 2
    for conc in (2, 8):
        rows = {(r["mode"], r["workers"]): r for r in results if r["chunk_concurrency"] == conc}
        ceiling = rows["ceiling", 1]["msg_per_s"]
        for key in [("batched", 1), ("batched", 2)]:
            assert rows[key]["ratio_to_ceiling"] == round(rows[key]["msg_per_s"] / ceiling, 3)
        assert rows["batched", 2]["ratio_to_one_worker"] == round(
            rows["batched", 2]["msg_per_s"] / rows["batched", 1]["msg_per_s"], 3
        )
        for row in rows.values():
            locks = row["locks"]
            if locks["lock_wait_share"] is not None:
                assert 0 <= locks["counter_wait_share"] <= locks["lock_wait_share"] <= 1
    table = [_columns(line) for line in done.stdout.strip().splitlines()[1:]]
    assert [(r["mode"], r["conc"], r["workers"]) for r in table] == [
        (r["mode"], str(r["chunk_concurrency"]), str(r["workers"])) for r in results
    ]
    assert [r["vs_1w"] for r in table[:2]] == ["-", "-"]
    assert table[2]["vs_1w"] == f"{results[2]['ratio_to_one_worker']:.2f}x"
    assert table[1]["vs_ceiling"] == f"{results[1]['ratio_to_ceiling']:.0%}"
    assert all(r["exact"] == "yes" for r in table)


@pytest.mark.slow
def test_bench_measures_sqlite_with_one_writer_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = _bench(
        "--messages", "300", "--publishers", "2", "--topics", "2", "--backends", "sqlite",
        "--modes", "batched,ceiling", "--workers", "1,2", "--chunk-concurrency", "2,4",
        "--latency-batches", "0", "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())["results"]
    assert [(r["mode"], r["chunk_concurrency"], r["workers"]) for r in results] == [
        ("ceiling", 1, 1),
        ("batched", 2, 1),
        ("batched", 4, 1),
    ]
    # The one-connection ceiling is the ceiling of every concurrency.
    ceiling = results[0]["msg_per_s"]
    assert [r["ratio_to_ceiling"] for r in results[1:]] == [
        round(r["msg_per_s"] / ceiling, 3) for r in results[1:]
    ]
    assert "SQLite takes one writer" in done.stderr
    assert len(done.stdout.strip().splitlines()) == 4


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


@pytest.mark.slow
def test_bench_rounds_measure_each_group_in_turn_and_show_the_median(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = _bench(
        "--messages", "200", "--backends", "sqlite", "--modes", "ceiling,batched",
        "--rounds", "3", "--latency-batches", "0", "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "2 measurements, 3 rounds each (the table shows the median)" in done.stderr
    rows = json.loads(out.read_text())["results"]
    assert [(r["mode"], len(r["runs_msg_per_s"])) for r in rows] == [("ceiling", 3), ("batched", 3)]
    for row in rows:
        assert row["msg_per_s"] == sorted(row["runs_msg_per_s"])[1] and row["exact"]
    assert len(done.stdout.strip().splitlines()) == 1 + 2  # a row per mode, not per run


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
        (["--chunk-concurrency", "0"], "--chunk-concurrency must be a positive whole number"),
        (["--chunk-concurrency", "4,"], "--chunk-concurrency must be a positive whole number"),
        (["--chunk-concurrency", "4,x"], "--chunk-concurrency must be a positive whole number"),
        (["--chunk-concurrency", "8,33"], "--chunk-concurrency: at most 32 (got 33)"),
        (["--latency-batches", "-1"], "--latency-batches must be a whole number (0 to skip)"),
        (["--latency-batches", "two"], "--latency-batches must be a whole number (0 to skip)"),
        (["--modes", "raw"], "--modes: choose from ceiling, dbos-raw, batched"),
        (["--rounds", "0"], "--rounds must be a positive whole number, not '0'"),
        (["--rounds", "2,3"], "--rounds must be a positive whole number, not '2,3'"),
        (["--rounds", "10"], "--rounds: at most 9 (got 10)"),
    ],
)
def test_bench_refuses_bad_arguments(cli: InProcessCli, args: list[str], fragment: str) -> None:
    done = cli("bench", *args)
    assert done.returncode == 2
    assert fragment in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert done.stdout == "", "refused before the table header is printed"
