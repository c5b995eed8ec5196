"""Run every (backend, mode, size, workers) measurement in its own subprocess; print a table, write
JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from app.bench.modes import MODES, ModeName
from app.bench.spec import Spec
from app.config import ConfigError, DatabaseUrl
from app.database import require_reachable

# Workers of one measurement run on this machine, each with its own connection pools to the one
# Postgres (whose default max_connections is 100).
MAX_WORKERS = 8


@dataclass(frozen=True)
class Plan:
    backends: list[str]
    modes: list[ModeName]
    sizes: list[int]
    per_message_size: int
    publishers: int
    topics: int
    postgres_url: str
    json_path: Path
    workers: list[int] = field(default_factory=lambda: [1])  # ascending, distinct


def worker_counts(plan: Plan, backend: str, mode: ModeName) -> list[int]:
    """raw is one client (the ceiling) and SQLite takes one worker: those run with 1 only."""
    return plan.workers if backend == "postgres" and mode != "raw" else [1]


def run(plan: Plan) -> list[dict[str, Any]]:
    """Measure everything the plan names; raw first per backend and size, and each DBOS mode with
    1 worker before more, for the ratios."""
    if "postgres" in plan.backends:
        require_reachable(DatabaseUrl.parse(plan.postgres_url, "--postgres-url"))
    if "sqlite" in plan.backends and plan.workers != [1]:
        print(
            "note: SQLite takes one worker: its rows are measured with 1 worker only",
            file=sys.stderr,
        )
    rows: list[dict[str, Any]] = []
    for backend in plan.backends:
        for size in plan.sizes:
            ceiling = None
            for mode in sorted(plan.modes, key=lambda m: m != "raw"):
                messages = min(size, plan.per_message_size) if MODES[mode].per_message else size
                if MODES[mode].per_message and size != plan.sizes[0]:
                    continue  # the per-message shapes are measured once, at their own size
                one_worker = None
                for workers in worker_counts(plan, backend, mode):
                    spec = Spec(
                        backend,
                        mode,
                        messages,
                        plan.publishers,
                        plan.topics,
                        plan.postgres_url,
                        workers,
                    )
                    row = measure_in_subprocess(spec)
                    ceiling = row["msg_per_s"] if mode == "raw" else ceiling
                    one_worker = row["msg_per_s"] if workers == 1 else one_worker
                    row["ratio_to_raw"] = _ratio(row["msg_per_s"], ceiling)
                    row["ratio_to_one_worker"] = (
                        None if workers == 1 else _ratio(row["msg_per_s"], one_worker)
                    )
                    rows.append(row)
                    print(format_row(row), flush=True)
    write_json(plan, rows)
    return rows


def _ratio(value: float, base: float | None) -> float | None:
    return round(value / base, 3) if base else None


def measure_in_subprocess(spec: Spec) -> dict[str, Any]:
    process = subprocess.Popen(
        [sys.executable, "-m", "app.bench.worker", json.dumps(asdict(spec))],
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
    f"{'backend':<9} {'mode':<12} {'workers':>7} {'messages':>9} {'msg/s':>9} {'p50 ms':>8} "
    f"{'p99 ms':>8} {'RSS MB':>7} {'commits/msg':>11} {'vs raw':>7} {'vs 1w':>6} {'exact':>5}"
)


def format_row(row: dict[str, Any]) -> str:
    commits = row["commits_per_msg"]
    ratio = row.get("ratio_to_raw")
    scaling = row.get("ratio_to_one_worker")
    return (
        f"{row['backend']:<9} {row['mode']:<12} {row['workers']:>7} {row['messages']:>9} "
        f"{row['msg_per_s']:>9.0f} {row['p50_ms']:>8.0f} {row['p99_ms']:>8.0f} "
        f"{row['peak_rss_mb']:>7.0f} {'-' if commits is None else f'{commits:.4f}':>11} "
        f"{'-' if ratio is None else f'{ratio:.0%}':>7} "
        f"{'-' if scaling is None else f'{scaling:.2f}x':>6} {'yes' if row['exact'] else 'NO':>5}"
    )


def write_json(plan: Plan, rows: list[dict[str, Any]]) -> None:
    plan.json_path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "publishers": plan.publishers,
        "topics": plan.topics,
        "workers": plan.workers,
        "modes": {name: MODES[name].description for name in plan.modes},
        "results": rows,
    }
    plan.json_path.write_text(json.dumps(document, indent=2) + "\n")
