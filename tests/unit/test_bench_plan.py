"""Which measurements a bench plan makes, in which order, and which references each row is read
against (no database: the plan and the ratios only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.bench import runner
from lab.bench.contention import LockSamples
from lab.bench.modes import ModeName
from lab.bench.plan import Plan


def _plan(backends: list[str], modes: list[ModeName], **extra: Any) -> Plan:
    return Plan(
        backends=backends,
        modes=modes,
        sizes=[1000, 5000],
        per_message_size=200,
        publishers=2,
        topics=2,
        postgres_url="postgresql://nobody@127.0.0.1:1/none",
        json_path=Path("unused.json"),
        **extra,
    )


def _rows(plan: Plan) -> list[tuple[str, str, int, int, int]]:
    return [
        (s.backend, s.mode, s.messages, s.chunk_concurrency, s.workers)
        for group in runner.planned_groups(plan)
        for s in group
    ]


def test_references_come_first_at_every_concurrency_and_per_message_runs_once() -> None:
    plan = _plan(
        ["postgres"],
        ["exp7", "batched", "dbos-raw", "ceiling", "per-message", "dbos-raw-per-message"],
        chunk_concurrency=[4, 8],
        workers=[1, 2],
    )
    chunk = [
        ("postgres", mode, size, conc, workers)
        for size in (1000, 5000)
        for conc in (4, 8)
        for mode, workers in [("ceiling", 1), ("dbos-raw", 1), ("batched", 1), ("batched", 2)]
    ]
    per_message = [
        ("postgres", "dbos-raw-per-message", 200, 16, 1),
        ("postgres", "per-message", 200, 16, 1),
        ("postgres", "per-message", 200, 16, 2),
        ("postgres", "exp7", 200, 10, 1),
        ("postgres", "exp7", 200, 10, 2),
    ]
    assert _rows(plan) == chunk + per_message


def test_sqlite_measures_its_one_writer_ceiling_once_per_size() -> None:
    plan = _plan(["sqlite"], ["batched", "ceiling"], chunk_concurrency=[4, 8], workers=[1, 2])
    assert _rows(plan) == [
        ("sqlite", mode, size, conc, 1)
        for size in (1000, 5000)
        for mode, conc in [("ceiling", 1), ("batched", 4), ("batched", 8)]
    ]


def _row(mode: str, msg_per_s: float, **extra: Any) -> dict[str, Any]:
    defaults = {"backend": "postgres", "messages": 1000, "chunk_concurrency": 4, "workers": 1}
    return {"mode": mode, "msg_per_s": msg_per_s, **defaults, **extra}


def test_each_row_is_read_against_the_references_of_its_own_concurrency() -> None:
    rows: list[dict[str, Any]] = []
    for row in [
        _row("ceiling", 100.0),
        _row("dbos-raw", 50.0),
        _row("ceiling", 200.0, chunk_concurrency=8),
        _row("dbos-raw", 80.0, chunk_concurrency=8),
        _row("batched", 40.0, chunk_concurrency=8),
        _row("batched", 60.0, chunk_concurrency=8, workers=2),
        _row("batched", 30.0, messages=5000),  # no reference of its size: no ratio
        _row("dbos-raw-per-message", 70.0, chunk_concurrency=32, messages=200),
        _row("per-message", 35.0, chunk_concurrency=32, messages=200),
    ]:
        runner.add_ratios(row, rows)
        rows.append(row)
    ratios = [
        (r["ratio_to_ceiling"], r["ratio_to_dbos_raw"], r["ratio_to_one_worker"]) for r in rows
    ]
    assert ratios == [
        (1.0, None, None),
        (0.5, 1.0, None),
        (1.0, None, None),
        (0.4, 1.0, None),
        (0.2, 0.5, None),
        (0.3, 0.75, 1.5),
        (None, None, None),
        (None, 1.0, None),
        (None, 0.5, None),
    ]


def test_a_sqlite_row_is_read_against_the_one_connection_ceiling() -> None:
    ceiling = _row("ceiling", 100.0, backend="sqlite", chunk_concurrency=1)
    batched = _row("batched", 25.0, backend="sqlite", chunk_concurrency=8)
    runner.add_ratios(batched, [ceiling])
    assert batched["ratio_to_ceiling"] == 0.25


def test_lock_samples_count_waits_and_counter_waits_among_chunk_transactions() -> None:
    found = LockSamples()
    found.add([])  # nothing running: a query, not a sample
    found.add([("Lock", "transactionid", True), ("IO", "DataFileRead", False)])
    found.add([("Lock", "extend", False), ("", "", False)])
    report = found.report()
    assert found.queries == 3
    assert report == {
        "samples": 2,
        "lock_wait_share": 0.5,
        "counter_wait_share": 0.25,
        "lock_wait_any": 1.0,
        "waits_by_event": {"transactionid": 1, "extend": 1},
    }


def test_rows_are_grouped_with_the_references_they_are_read_against() -> None:
    plan = _plan(
        ["postgres"],
        ["batched", "ceiling", "per-message", "dbos-raw-per-message"],
        chunk_concurrency=[4, 8],
    )
    groups = [
        [(s.mode, s.messages, s.chunk_concurrency) for s in g] for g in runner.planned_groups(plan)
    ]
    assert groups == [
        [("ceiling", 1000, 4), ("batched", 1000, 4)],
        [("ceiling", 1000, 8), ("batched", 1000, 8)],
        [("ceiling", 5000, 4), ("batched", 5000, 4)],
        [("ceiling", 5000, 8), ("batched", 5000, 8)],
        [("dbos-raw-per-message", 200, 16), ("per-message", 200, 16)],
    ]


def test_a_row_of_several_rounds_is_its_median_run_and_exact_only_if_every_run_was() -> None:
    def run(msg_per_s: float, exact: bool = True) -> dict[str, Any]:
        return {"msg_per_s": msg_per_s, "exact": exact, "violations": [] if exact else ["lost"]}

    row = runner.median_run([run(30.0), run(10.0), run(20.0)])
    assert (row["msg_per_s"], row["runs_msg_per_s"], row["exact"]) == (
        20.0,
        [30.0, 10.0, 20.0],
        True,
    )
    assert runner.median_run([run(40.0), run(10.0)])["msg_per_s"] == 10.0  # the lower middle
    one_lost = runner.median_run([run(30.0), run(10.0, exact=False), run(20.0)])
    assert (one_lost["msg_per_s"], one_lost["exact"], one_lost["violations"]) == (
        20.0,
        False,
        ["lost"],
    )
