"""One benchmark measurement in its own process (so peak RSS is its own): fresh databases,
one mode, N messages; prints one JSON line.

With `workers` above 1 (Postgres), the measuring process is worker `bench-0` and starts the
others (lab.bench.crew)."""

from __future__ import annotations

import json
import resource
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, cast

import sqlalchemy as sa
from dbos import DBOS, SetWorkflowID

from dbos_publishers import _migrate as migrate
from dbos_publishers import _runtime as runtime
from dbos_publishers._config import DatabaseUrl, Settings
from dbos_publishers._ids import batch_workflow_id
from dbos_publishers._logs import configure_logging
from dbos_publishers._wire import ChunkOutcome
from dbos_publishers.store import _invariants as invariants
from dbos_publishers.store._database import short_lived_engine
from lab.bench import crew, references
from lab.bench.contention import lock_sampler
from lab.bench.crew import START, STOP, extra_workers
from lab.bench.modes import MODES, Mode
from lab.bench.spec import Spec, batches, bench_settings, cpu_seconds, executor_id
from lab.scratch import scratch_databases


@dataclass
class Measurement:
    backend: str
    mode: str
    workers: int
    messages: int
    seconds: float
    msg_per_s: float
    p50_ms: float
    p99_ms: float
    commits_per_msg: float | None
    peak_rss_mb: float
    # user+sys CPU seconds of every benchmark process (all workers) while the clock ran.
    cpu_s: float
    # Distinct executors that ran chunk workflows (None for ceiling, which runs none).
    executors: int | None
    exact: bool
    violations: list[str]
    chunk_concurrency: int
    # Chunk transactions waiting on a lock, sampled from a side connection (Postgres, chunk modes).
    locks: dict[str, Any] | None


def commits(url: DatabaseUrl) -> int | None:
    if url.backend == "sqlite":
        return None
    time.sleep(1.2)  # let other backends flush their statistics
    with short_lived_engine(url) as engine, engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_stat_force_next_flush()"))
        query = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        return int(conn.scalar(sa.text(query)) or 0)


def weighted_percentiles(samples: list[tuple[float, int]]) -> tuple[float, float]:
    """p50 and p99 of latencies, each sample weighted by the messages it stands for."""
    samples.sort()
    total = sum(weight for _, weight in samples)
    marks, found, seen = [0.5 * total, 0.99 * total], [], 0
    for latency, weight in samples:
        seen += weight
        while marks and seen >= marks[0]:
            found.append(latency)
            marks.pop(0)
    return found[0], found[1]


QUEUE_WARM_UP_SEC = 1.2
Samples = list[tuple[float, int]]  # (ms from submit to published, messages)


@dataclass
class Timing:
    samples: Samples
    seconds: float
    cpu_s: float
    executors: int | None = None


def run_dbos(spec: Spec, settings: Settings, mode: Mode) -> Timing:
    rt = runtime.build(
        runtime.validate(settings), isolation=mode.isolation, executor_id=executor_id(0)
    )
    try:
        # Launched (and the system database migrated) before the extra workers start.
        runtime.launch(rt)
        with extra_workers(spec, settings) as crew:
            # Measure a running service: DBOS notices newly registered queues once a second and
            # only then starts their workers, a one-off cost of every start-up, not throughput.
            time.sleep(QUEUE_WARM_UP_SEC)
            crew.tell(START)
            cpu_before = cpu_seconds()
            start = time.time()
            handles = []
            for publisher, batch_id, request in batches(spec):
                with SetWorkflowID(batch_workflow_id(batch_id)):
                    handles.append(
                        DBOS.start_workflow(rt.publishers[publisher].publish_batch, request)
                    )
            summaries = crew.watch(lambda: [handle.get_result() for handle in handles])
            seconds = time.time() - start
            cpu_s = cpu_seconds() - cpu_before
            crew.tell(STOP)
        for summary in summaries:
            if summary["failed"]:
                raise RuntimeError(f"benchmark batch failed: {summary['failed_chunks'][:1]}")
        chunks = DBOS.list_workflows(
            workflow_id_prefix="batch-bench-", name="publish_chunk", load_input=False
        )
    finally:
        runtime.shutdown(rt)
    start_ms = start * 1000
    samples = [
        (float(wf.updated_at or 0) - start_ms, int(cast(ChunkOutcome, wf.output)["messages"]))
        for wf in chunks
    ]
    executors = len({wf.executor_id for wf in chunks})
    return Timing(samples, seconds, round(cpu_s + crew.cpu_s, 2), executors)


def run_reference(spec: Spec, settings: Settings, mode: Mode) -> Timing:
    run = references.run_ceiling if mode.runner == "ceiling" else references.run_dbos_raw
    samples, seconds, cpu_s = run(spec, settings, mode)
    return Timing(samples, seconds, cpu_s, None if mode.runner == "ceiling" else 1)


def measure(spec: Spec) -> Measurement:
    mode = MODES[spec.mode]  # type: ignore[index]
    if spec.workers > 1 and (spec.backend == "sqlite" or mode.reference):
        raise ValueError(f"{spec.backend}/{spec.mode} runs with 1 worker, not {spec.workers}")
    configure_logging("json", "WARNING")
    with scratch_databases(spec.backend, spec.postgres_url, "bench") as (system_db, app_db):
        migrate.upgrade(app_db)
        settings = bench_settings(spec, mode, system_db, app_db)
        before = commits(app_db)
        run = run_reference if mode.reference else run_dbos
        with lock_sampler(app_db, enabled=not mode.per_message) as locks:
            timing = run(spec, settings, mode)
        # The run's peak: the check below reads every position of every batch into memory.
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        after = commits(app_db)
        with short_lived_engine(app_db) as engine, engine.connect() as conn:
            report = invariants.check(
                conn, {batch_id: req["count"] for _, batch_id, req in batches(spec)}
            )
    p50, p99 = weighted_percentiles(timing.samples)
    return Measurement(
        backend=spec.backend,
        mode=spec.mode,
        workers=spec.workers,
        messages=spec.messages,
        seconds=round(timing.seconds, 3),
        msg_per_s=round(spec.messages / timing.seconds, 1),
        p50_ms=round(p50, 1),
        p99_ms=round(p99, 1),
        commits_per_msg=(
            round((after - before - locks.queries) / spec.messages, 4)
            if after is not None and before is not None
            else None
        ),
        peak_rss_mb=round(peak_rss_mb, 1),
        cpu_s=round(timing.cpu_s, 2),
        executors=timing.executors,
        exact=report.ok and report.ledger_rows == spec.messages,
        violations=report.violations,
        chunk_concurrency=spec.chunk_concurrency,
        locks=locks.report() if locks.queries else None,
    )


def main(argv: list[str]) -> int:
    if argv[:1] == ["--join"]:
        return crew.join(json.loads(argv[1]))
    spec = Spec(**json.loads(argv[0]))
    result: dict[str, Any] = asdict(measure(spec))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
