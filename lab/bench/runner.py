"""Run every (backend, mode, size, concurrency, workers) measurement in its own subprocess, read
each against the references of the same run; print a table, write JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from typing import Any, cast

from dbos_publishers._config import ConfigError, DatabaseUrl
from dbos_publishers.store._database import require_reachable
from lab.bench import latency
from lab.bench.modes import MODES, ModeName
from lab.bench.plan import Plan
from lab.bench.progress import BenchProgress, describe_plan
from lab.bench.spec import Spec

# Workers of one measurement run on this machine, each with its own connection pools to the one
# Postgres (whose default max_connections is 100).
MAX_WORKERS = 8
MAX_CHUNK_CONCURRENCY = 32
MAX_ROUNDS = 9
CHUNK_ORDER: list[ModeName] = ["ceiling", "dbos-raw", "batched", "batched-shipped"]
PER_MESSAGE_ORDER: list[ModeName] = ["dbos-raw-per-message", "per-message", "exp7"]


def worker_counts(plan: Plan, backend: str, mode: ModeName) -> list[int]:
    """References run one worker (the measuring process) and SQLite takes one worker."""
    return plan.workers if backend == "postgres" and not MODES[mode].reference else [1]


def planned_groups(plan: Plan) -> list[list[Spec]]:
    """The measurements in groups read against each other (references before the product rows
    read against them): per backend, size and concurrency the chunk-sized rows; per backend the
    per-message shapes."""
    groups: list[list[Spec]] = []
    for backend in plan.backends:
        for size in plan.sizes:
            groups += _chunk_groups(plan, backend, size)
        # The per-message shapes manage tens of messages a second: once, at their own size.
        size = min(plan.sizes[0], plan.per_message_size)
        groups.append(
            [
                spec
                for mode in PER_MESSAGE_ORDER
                if mode in plan.modes
                for spec in _specs(plan, backend, mode, size, MODES[mode].chunk_concurrency or 1)
            ]
        )
    return [group for group in groups if group]


def _chunk_groups(plan: Plan, backend: str, size: int) -> list[list[Spec]]:
    groups: list[list[Spec]] = []
    for concurrency in plan.chunk_concurrency:
        group: list[Spec] = []
        for mode in [m for m in CHUNK_ORDER if m in plan.modes]:
            one_writer = mode == "ceiling" and backend == "sqlite"
            if one_writer and concurrency != plan.chunk_concurrency[0]:
                continue  # SQLite has one writer: its ceiling is measured once, 1 connection
            group += _specs(plan, backend, mode, size, 1 if one_writer else concurrency)
        groups.append(group)
    return groups


def _specs(plan: Plan, backend: str, mode: ModeName, size: int, concurrency: int) -> list[Spec]:
    return [
        Spec(
            backend=backend,
            mode=mode,
            messages=size,
            publishers=plan.publishers,
            topics=plan.topics,
            postgres_url=plan.postgres_url,
            workers=workers,
            chunk_concurrency=concurrency,
        )
        for workers in worker_counts(plan, backend, mode)
    ]


def run(plan: Plan) -> list[dict[str, Any]]:
    """Measure everything the plan names, then the latency of an idle service per backend."""
    if "postgres" in plan.backends:
        require_reachable(DatabaseUrl.parse(plan.postgres_url, "--postgres-url"))
    if "sqlite" in plan.backends and (plan.workers != [1] or "ceiling" in plan.modes):
        print(
            "note: SQLite takes one writer: its product rows run 1 worker, its ceiling 1 "
            "connection",
            file=sys.stderr,
        )
    groups = planned_groups(plan)
    specs = [spec for group in groups for spec in group]
    print(describe_plan(plan, specs), file=sys.stderr, flush=True)
    print(HEADER, flush=True)
    rows: list[dict[str, Any]] = []
    latencies: dict[str, Any] = {}
    with BenchProgress(plan, specs) as progress:
        for group in groups:
            runs: list[list[dict[str, Any]]] = [[] for _ in group]
            for _ in range(plan.rounds):  # in turn, so a slow spell of the machine hits all
                for spec, found in zip(group, runs, strict=True):
                    progress.starting(spec)
                    found.append(measure_in_subprocess(spec))
                    progress.finished(spec)
            for found in runs:
                row = median_run(found)
                add_ratios(row, rows)
                rows.append(row)
                print(format_row(row), flush=True)
        for backend in plan.backends if plan.latency_batches else []:
            progress.starting_latency(backend)
            latencies[backend] = latency.measure(backend, plan.postgres_url, plan.latency_batches)
            progress.finished_latency(backend)
    for backend, found in latencies.items():
        print(latency.format_line(backend, found), flush=True)
    for row in rows:  # the JSON also reads each reference against the one measured after it
        add_ratios(row, rows)
    write_json(plan, rows, latencies)
    return rows


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median msg/s (the lower one of an even count) stands for the row; it
    also carries every run's msg/s, and is exact only if every run was."""
    row = dict(sorted(runs, key=lambda r: r["msg_per_s"])[(len(runs) - 1) // 2])
    row["runs_msg_per_s"] = [r["msg_per_s"] for r in runs]
    row["exact"] = all(r["exact"] for r in runs)
    row["violations"] = [v for r in runs for v in r["violations"]]
    return row


def _reference(rows: list[dict[str, Any]], row: dict[str, Any], mode: str) -> float | None:
    """msg/s of `mode` (1 worker) of the row's backend and size, at its concurrency (the
    ceiling on SQLite: its one connection)."""
    for found in rows:
        same_conc = found["chunk_concurrency"] == row["chunk_concurrency"] or (
            mode == "ceiling" and row["backend"] == "sqlite"
        )
        if (found["mode"], found["backend"], found["messages"]) == (
            mode,
            row["backend"],
            row["messages"],
        ) and (same_conc or MODES[cast(ModeName, mode)].per_message):
            return float(found["msg_per_s"])
    return None


def add_ratios(row: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    per_message = MODES[cast(ModeName, row["mode"])].per_message
    raw = "dbos-raw-per-message" if per_message else "dbos-raw"
    row["ratio_to_ceiling"] = None if per_message else _ratio(row, _reference(rows, row, "ceiling"))
    row["ratio_to_dbos_raw"] = _ratio(row, _reference(rows, row, raw))
    if row["mode"] == raw:
        row["ratio_to_dbos_raw"] = 1.0
    if row["mode"] == "ceiling":
        row["ratio_to_ceiling"] = 1.0
    if row["mode"] == "batched-shipped":
        row["ratio_to_batched"] = _ratio(row, _reference(rows, row, "batched"))
    one = [
        r
        for r in rows
        if (r["mode"], r["backend"], r["messages"], r["chunk_concurrency"], r["workers"])
        == (row["mode"], row["backend"], row["messages"], row["chunk_concurrency"], 1)
    ]
    row["ratio_to_one_worker"] = (
        _ratio(row, float(one[0]["msg_per_s"])) if row["workers"] > 1 and one else None
    )


def _ratio(row: dict[str, Any], base: float | None) -> float | None:
    return round(row["msg_per_s"] / base, 3) if base else None


def measure_in_subprocess(spec: Spec) -> dict[str, Any]:
    process = subprocess.Popen(
        [sys.executable, "-m", "lab.bench.worker", json.dumps(asdict(spec))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise ConfigError(
            f"benchmark {spec.backend}/{spec.mode}/{spec.workers}w failed: {stderr.strip()[-300:]}"
        )
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return result


HEADER = (
    f"{'backend':<9} {'mode':<20} {'conc':>4} {'workers':>7} {'messages':>9} {'msg/s':>8} "
    f"{'rss_mb':>6} {'cpu_s':>6} {'commits/msg':>11} {'vs_ceiling':>10} {'vs_dbos_raw':>11} "
    f"{'vs_batched':>10} {'vs_1w':>6} {'lock_wait':>9} {'ctr_wait':>8} {'exact':>5}"
)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def format_row(row: dict[str, Any]) -> str:
    commits = row["commits_per_msg"]
    scaling = row.get("ratio_to_one_worker")
    locks = row.get("locks") or {}
    return (
        f"{row['backend']:<9} {row['mode']:<20} {row['chunk_concurrency']:>4} "
        f"{row['workers']:>7} {row['messages']:>9} {row['msg_per_s']:>8.0f} "
        f"{row['peak_rss_mb']:>6.0f} {row['cpu_s']:>6.1f} "
        f"{'-' if commits is None else f'{commits:.4f}':>11} "
        f"{_percent(row.get('ratio_to_ceiling')):>10} "
        f"{_percent(row.get('ratio_to_dbos_raw')):>11} "
        f"{_percent(row.get('ratio_to_batched')):>10} "
        f"{'-' if scaling is None else f'{scaling:.2f}x':>6} "
        f"{_percent(locks.get('lock_wait_share')):>9} "
        f"{_percent(locks.get('counter_wait_share')):>8} {'yes' if row['exact'] else 'NO':>5}"
    )


def write_json(plan: Plan, rows: list[dict[str, Any]], latencies: dict[str, Any]) -> None:
    plan.json_path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "publishers": plan.publishers,
        "topics": plan.topics,
        "workers": plan.workers,
        "chunk_concurrency": plan.chunk_concurrency,
        "rounds": plan.rounds,
        "modes": {name: MODES[name].description for name in plan.modes},
        "results": rows,
        "latency": latencies,
    }
    plan.json_path.write_text(json.dumps(document, indent=2) + "\n")
