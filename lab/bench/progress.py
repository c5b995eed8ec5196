"""What `bench` is about to measure and how long that should take (stderr), and a live progress
display on a terminal (rich); quiet when stderr is not a terminal or CI=true.

Estimates come from a fixed table of rough rates per mode and backend measured on a 2-core
machine, plus a fixed start-up cost per row: a guide, not a promise."""

from __future__ import annotations

import os
import sys
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from lab.bench.plan import Plan
from lab.bench.spec import Spec

# Rough msg/s per (mode, backend), and seconds of start-up per row (fresh databases, interpreter,
# DBOS launch, the 1.2 s queue warm-up, the invariants check).
RATES: dict[str, dict[str, float]] = {
    "ceiling": {"sqlite": 40_000, "postgres": 80_000},
    "dbos-raw": {"sqlite": 15_000, "postgres": 45_000},
    "batched": {"sqlite": 15_000, "postgres": 35_000},
    "batched-shipped": {"sqlite": 10_000, "postgres": 25_000},
    "dbos-raw-per-message": {"sqlite": 20, "postgres": 50},
    "per-message": {"sqlite": 15, "postgres": 40},
    "exp7": {"sqlite": 10, "postgres": 10},
}
ROW_START_SEC = {"ceiling": 5.0}
DBOS_ROW_START_SEC = 8.0
LATENCY_START_SEC = 15.0  # service start-up, warm-up and the `publish --wait` runs
LATENCY_PER_BATCH_SEC = 0.6


def estimate(spec: Spec) -> float:
    """Seconds one measurement should take, from the rate table."""
    start = ROW_START_SEC.get(spec.mode, DBOS_ROW_START_SEC) + 2.0 * (spec.workers - 1)
    return start + spec.messages / RATES[spec.mode][spec.backend]


def latency_estimate(batches: int) -> float:
    return LATENCY_START_SEC + LATENCY_PER_BATCH_SEC * batches


def describe_plan(plan: Plan, specs: list[Spec]) -> str:
    """The rows to measure and the estimated total, one line each."""
    rounds = f", {plan.rounds} rounds each (the table shows the median)" if plan.rounds > 1 else ""
    lines = [f"bench: {len(specs)} measurements{rounds}"]
    for spec in specs:
        lines.append(
            f"  {spec.backend:<9} {spec.mode:<20} conc {spec.chunk_concurrency:>2}  "
            f"workers {spec.workers}  {spec.messages:>9,} messages  ~{estimate(spec):5.0f} s"
        )
    total = sum(estimate(spec) for spec in specs) * plan.rounds
    if plan.latency_batches:
        each = latency_estimate(plan.latency_batches)
        lines.append(
            f"  latency: {plan.latency_batches} batches of {100} messages on an idle service, "
            f"per backend  ~{each:5.0f} s each"
        )
        total += each * len(plan.backends)
    lines.append(f"estimated total: ~{total / 60:.1f} min (from a fixed table of rough rates)")
    return "\n".join(lines)


def live_enabled() -> bool:
    return sys.stderr.isatty() and os.environ.get("CI", "").lower() != "true"


class BenchProgress:
    """A bar over the estimated seconds of the whole run, naming the current measurement."""

    def __init__(self, plan: Plan, specs: list[Spec]) -> None:
        self.progress: Progress | None = None
        self.latency_each = latency_estimate(plan.latency_batches)
        total = sum(estimate(spec) for spec in specs) * plan.rounds
        total += self.latency_each * len(plan.backends) if plan.latency_batches else 0.0
        if live_enabled():
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}% of the estimate"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                # The table goes to stdout; on one terminal it is printed above the bar.
                redirect_stdout=sys.stdout.isatty(),
                redirect_stderr=False,
                transient=True,
            )
            self.task = self.progress.add_task("starting", total=total)

    def __enter__(self) -> BenchProgress:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.progress is not None:
            self.progress.stop()

    def _say(self, text: str, advance: float = 0.0) -> None:
        if self.progress is not None:
            self.progress.update(self.task, description=text, advance=advance)

    def starting(self, spec: Spec) -> None:
        self._say(
            f"{spec.backend} {spec.mode} conc {spec.chunk_concurrency} "
            f"{spec.workers}w {spec.messages:,} msgs (~{estimate(spec):.0f} s)"
        )

    def finished(self, spec: Spec) -> None:
        self._say("", estimate(spec))

    def starting_latency(self, backend: str) -> None:
        self._say(f"{backend} latency (~{self.latency_each:.0f} s)")

    def finished_latency(self, _backend: str) -> None:
        self._say("", self.latency_each)
