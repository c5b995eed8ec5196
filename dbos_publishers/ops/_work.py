"""Work still to do and work that ended unpublished, counted from DBOS's workflows for `status`,
the metrics and the dashboard."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from dbos import WorkflowStatus

from dbos_publishers._dbos_gateway import ACTIVE_STATUSES
from dbos_publishers._queues import BATCH_QUEUE, CHUNK_QUEUE


def pending_work(active: Iterable[WorkflowStatus]) -> dict[str, dict[str, int]]:
    """Counts of PENDING and ENQUEUED workflows per queue (publisher queues and recovery)."""
    counts: dict[str, Counter[str]] = {BATCH_QUEUE: Counter(), CHUNK_QUEUE: Counter()}
    for wf in active:
        counts.setdefault(wf.queue_name or "(no queue)", Counter())[wf.status] += 1
    return {queue: {s: c[s] for s in ACTIVE_STATUSES} for queue, c in sorted(counts.items())}


def dead_work(dead: Iterable[WorkflowStatus]) -> dict[str, dict[str, int]]:
    """Counts of workflows that ended without succeeding, per workflow (publish_batch,
    publish_chunk) and status: work that will not publish unless someone acts (`resume` or
    `retry`, or a new batch). Keyed by name: a cancelled workflow leaves its queue."""
    counts: dict[str, Counter[str]] = {}
    for wf in dead:
        counts.setdefault(wf.name, Counter())[wf.status] += 1
    return {name: dict(sorted(c.items())) for name, c in sorted(counts.items())}
