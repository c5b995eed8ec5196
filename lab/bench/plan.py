"""What one `bench` run measures, read by the runner and the progress display alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lab.bench.modes import ModeName


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
    chunk_concurrency: list[int] = field(default_factory=lambda: [4])  # ascending, distinct
    latency_batches: int = 20  # 0: no latency measurement
    # Each group (the rows read against each other) measured this many times, its rows in turn.
    rounds: int = 1
