"""Run every (backend, mode, size) measurement in its own subprocess; print a table, write JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.bench.modes import MODES, ModeName
from app.bench.worker import Spec
from app.config import ConfigError, DatabaseUrl
from app.database import require_reachable


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


def run(plan: Plan) -> list[dict[str, Any]]:
    """Measure everything the plan names; raw first per backend and size, for the ratios."""
    if "postgres" in plan.backends:
        require_reachable(DatabaseUrl.parse(plan.postgres_url, "--postgres-url"))
    rows: list[dict[str, Any]] = []
    for backend in plan.backends:
        for size in plan.sizes:
            ceiling = None
            for mode in sorted(plan.modes, key=lambda m: m != "raw"):
                messages = min(size, plan.per_message_size) if MODES[mode].per_message else size
                if MODES[mode].per_message and size != plan.sizes[0]:
                    continue  # the per-message shapes are measured once, at their own size
                spec = Spec(
                    backend, mode, messages, plan.publishers, plan.topics, plan.postgres_url
                )
                row = measure_in_subprocess(spec)
                ceiling = row["msg_per_s"] if mode == "raw" else ceiling
                row["ratio_to_raw"] = round(row["msg_per_s"] / ceiling, 3) if ceiling else None
                rows.append(row)
                print(format_row(row), flush=True)
    write_json(plan, rows)
    return rows


def measure_in_subprocess(spec: Spec) -> dict[str, Any]:
    process = subprocess.Popen(
        [sys.executable, "-m", "app.bench.worker", json.dumps(asdict(spec))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise ConfigError(f"benchmark {spec.backend}/{spec.mode} failed: {stderr.strip()[-300:]}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return result


HEADER = (
    f"{'backend':<9} {'mode':<12} {'messages':>9} {'msg/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
    f"{'RSS MB':>7} {'commits/msg':>11} {'vs raw':>7} {'exact':>5}"
)


def format_row(row: dict[str, Any]) -> str:
    commits = row["commits_per_msg"]
    ratio = row.get("ratio_to_raw")
    return (
        f"{row['backend']:<9} {row['mode']:<12} {row['messages']:>9} {row['msg_per_s']:>9.0f} "
        f"{row['p50_ms']:>8.0f} {row['p99_ms']:>8.0f} {row['peak_rss_mb']:>7.0f} "
        f"{'-' if commits is None else f'{commits:.4f}':>11} "
        f"{'-' if ratio is None else f'{ratio:.0%}':>7} {'yes' if row['exact'] else 'NO':>5}"
    )


def write_json(plan: Plan, rows: list[dict[str, Any]]) -> None:
    plan.json_path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "publishers": plan.publishers,
        "topics": plan.topics,
        "modes": {name: MODES[name].description for name in plan.modes},
        "results": rows,
    }
    plan.json_path.write_text(json.dumps(document, indent=2) + "\n")
