"""One benchmark measurement in its own process (so peak RSS is its own): fresh databases,
one mode, N messages; prints one JSON line."""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, cast

import sqlalchemy as sa
from dbos import DBOS, SetWorkflowID

from app import invariants, ledger, migrate, runtime
from app.bench.modes import MODES, Mode
from app.config import DatabaseUrl, PublisherDeclaration, QueueSettings, Settings
from app.database import make_engine, short_lived_engine
from app.ledger import LedgerEntry
from app.logs import configure_logging
from app.publishers.base import (
    BatchRequest,
    ChunkOutcome,
    batch_workflow_id,
    chunk_workflow_id,
)
from app.publishers.events import event_payload
from app.scratch import scratch_databases


@dataclass(frozen=True)
class Spec:
    backend: str
    mode: str
    messages: int
    publishers: int
    topics: int
    postgres_url: str


@dataclass
class Measurement:
    backend: str
    mode: str
    messages: int
    seconds: float
    msg_per_s: float
    p50_ms: float
    p99_ms: float
    commits_per_msg: float | None
    peak_rss_mb: float
    exact: bool
    violations: list[str]


def batches(spec: Spec) -> Iterator[tuple[str, str, BatchRequest]]:
    """Split N messages over P publishers x T topics: (publisher, batch id, request)."""
    pairs = [(f"p{p}", f"t{t}") for p in range(spec.publishers) for t in range(spec.topics)]
    for k, (publisher, topic) in enumerate(pairs):
        count = spec.messages // len(pairs) + (1 if k < spec.messages % len(pairs) else 0)
        if count:
            batch_id = f"bench-{publisher}-{topic}"
            yield (
                publisher,
                batch_id,
                BatchRequest(batch_id=batch_id, topic=topic, count=count, messages=None),
            )


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


def run_raw(spec: Spec, settings: Settings, mode: Mode) -> tuple[Samples, float]:
    engine = make_engine(settings.app_db)
    samples: Samples = []
    start = time.time()
    try:
        for publisher, batch_id, request in batches(spec):
            for chunk_start in range(0, request["count"], mode.chunk_size):
                count = min(mode.chunk_size, request["count"] - chunk_start)
                entries = [
                    LedgerEntry(
                        ledger.message_id(batch_id, i),
                        batch_id,
                        i,
                        publisher,
                        request["topic"],
                        event_payload(publisher, request["topic"], batch_id, i),
                        chunk_workflow_id(batch_id, chunk_start // mode.chunk_size),
                    )
                    for i in range(chunk_start, chunk_start + count)
                ]
                with engine.begin() as conn:
                    ledger.insert_rows(conn, entries)
                    ledger.bump_counters(conn, publisher, request["topic"], count)
                samples.append(((time.time() - start) * 1000, count))
    finally:
        engine.dispose()
    return samples, time.time() - start


def run_dbos(spec: Spec, settings: Settings, mode: Mode) -> tuple[Samples, float]:
    rt = runtime.build(runtime.validate(settings), isolation=mode.isolation)
    runtime.launch(rt)
    # Measure a running service: DBOS notices newly registered queues once a second and only
    # then starts their workers, a one-off cost of every start-up that is not throughput.
    time.sleep(QUEUE_WARM_UP_SEC)
    start = time.time()
    start_ms = start * 1000
    handles = []
    for publisher, batch_id, request in batches(spec):
        with SetWorkflowID(batch_workflow_id(batch_id)):
            handles.append(DBOS.start_workflow(rt.publishers[publisher].publish_batch, request))
    for handle in handles:
        summary = handle.get_result()
        if summary["failed"]:
            raise RuntimeError(f"benchmark batch failed: {summary['failed_chunks'][:1]}")
    seconds = time.time() - start
    samples = [
        (float(wf.updated_at or 0) - start_ms, int(cast(ChunkOutcome, wf.output)["messages"]))
        for wf in DBOS.list_workflows(
            workflow_id_prefix="batch-bench-", name="publish_chunk", load_input=False
        )
    ]
    runtime.shutdown(rt)
    return samples, seconds


def measure(spec: Spec) -> Measurement:
    mode = MODES[spec.mode]  # type: ignore[index]
    configure_logging("json", "WARNING")
    with scratch_databases(spec.backend, spec.postgres_url, "bench") as (system_db, app_db):
        migrate.upgrade(app_db)
        settings = Settings(
            system_db=system_db,
            app_db=app_db,
            publishers=tuple(
                PublisherDeclaration(
                    f"p{p}", "app.publishers.events:EventPublisher", mode.chunk_size
                )
                for p in range(spec.publishers)
            ),
            queues=QueueSettings(
                chunk_concurrency=mode.chunk_concurrency,
                batch_concurrency=spec.publishers * spec.topics,
                polling_interval_sec=mode.polling_interval_sec,
            ),
            log_format="json",
            log_level="WARNING",
        )
        before = commits(app_db)
        run = run_raw if mode.name == "raw" else run_dbos
        samples, seconds = run(spec, settings, mode)
        after = commits(app_db)
        with short_lived_engine(app_db) as engine, engine.connect() as conn:
            report = invariants.check(
                conn, {batch_id: req["count"] for _, batch_id, req in batches(spec)}
            )
    p50, p99 = weighted_percentiles(samples)
    return Measurement(
        backend=spec.backend,
        mode=spec.mode,
        messages=spec.messages,
        seconds=round(seconds, 3),
        msg_per_s=round(spec.messages / seconds, 1),
        p50_ms=round(p50, 1),
        p99_ms=round(p99, 1),
        commits_per_msg=(
            round((after - before) / spec.messages, 4)
            if after is not None and before is not None
            else None
        ),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        exact=report.ok and report.ledger_rows == spec.messages,
        violations=report.violations,
    )


def main(argv: list[str]) -> int:
    spec = Spec(**json.loads(argv[0]))
    result: dict[str, Any] = asdict(measure(spec))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
