"""What one measurement is and the settings every worker of it runs with (the measuring
process and the extra workers alike)."""

from __future__ import annotations

import resource
from collections.abc import Iterator
from dataclasses import dataclass, replace

from dbos_publishers import _connections as connections
from dbos_publishers._config import (
    MAX_CONNECTIONS,
    DatabaseUrl,
    PublisherDeclaration,
    QueueSettings,
    Settings,
)
from dbos_publishers._wire import BatchRequest, ChunkSpec, plan_chunks
from lab.bench.modes import Mode


@dataclass(frozen=True)
class Spec:
    backend: str
    mode: str
    messages: int
    publishers: int
    topics: int
    postgres_url: str
    workers: int = 1  # worker processes running the chunk workflows (DBOS modes, Postgres)
    chunk_concurrency: int = 4  # chunk transactions at once (per worker)


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


def chunks(spec: Spec, chunk_size: int) -> Iterator[tuple[str, ChunkSpec]]:
    """Every chunk of every batch, as the product's `plan_chunks` plans it: (publisher, chunk)."""
    for publisher, _, request in batches(spec):
        for chunk in plan_chunks(request, chunk_size):
            yield publisher, chunk


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def executor_id(index: int) -> str:
    """Distinct per worker of a measurement: DBOS recovers only its own executor's work."""
    return f"bench-{index}"


def bench_settings(spec: Spec, mode: Mode, system_db: DatabaseUrl, app_db: DatabaseUrl) -> Settings:
    """What every worker of a measurement runs with: the measuring process and the extra ones."""
    uncapped = Settings(
        system_db=system_db,
        app_db=app_db,
        publishers=tuple(
            PublisherDeclaration(
                f"p{p}", "dbos_publishers.contrib.events:EventPublisher", mode.chunk_size
            )
            for p in range(spec.publishers)
        ),
        queues=QueueSettings(
            chunk_concurrency=spec.chunk_concurrency,
            batch_concurrency=spec.publishers * spec.topics,
            polling_interval_sec=mode.polling_interval_sec,
            chunk_prefetch=mode.chunk_prefetch,
        ),
        log_format="json",
        log_level="WARNING",
        connections=MAX_CONNECTIONS,
    )
    # A connection budget of what the mode's concurrency can use, as the benchmark had before
    # budgets existed (the service's default budget refuses per-message's 32 chunks at once).
    return replace(uncapped, connections=connections.plan(uncapped).total)
