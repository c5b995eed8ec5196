"""The two durable queues: one for batch workflows, one for chunk workflows."""

from __future__ import annotations

from dbos import DBOS, Queue

from dbos_publishers._config import QueueSettings

BATCH_QUEUE = "publisher_batches"
CHUNK_QUEUE = "publisher_chunks"

_registered: dict[str, Queue] = {}


def register_queues(settings: QueueSettings) -> None:
    """Register both queues; DBOS 3.x requires this after DBOS.launch()."""
    _registered[BATCH_QUEUE] = DBOS.register_queue(
        BATCH_QUEUE,
        worker_concurrency=settings.batch_concurrency,
        polling_interval_sec=settings.polling_interval_sec,
        on_conflict="always_update",
    )
    _registered[CHUNK_QUEUE] = DBOS.register_queue(
        CHUNK_QUEUE,
        worker_concurrency=settings.chunk_workflows,
        polling_interval_sec=settings.polling_interval_sec,
        on_conflict="always_update",
    )


def chunk_queue() -> Queue:
    try:
        return _registered[CHUNK_QUEUE]
    except KeyError:
        raise RuntimeError(
            "queues are not registered: call register_queues() after launch"
        ) from None
