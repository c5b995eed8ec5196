"""Work still to do, read from DBOS's active workflows: counts per queue, and orphans (pending
work of a publisher that is no longer declared, which no process here can run)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from dbos import WorkflowStatus

from app.config import Settings
from app.dbos_gateway import ACTIVE_STATUSES
from app.errors import StateError
from app.publishers.base import BATCH_WORKFLOW, PUBLISHER_CLASS_NAME
from app.queues import BATCH_QUEUE, CHUNK_QUEUE


class OrphanedWorkError(StateError):
    """Pending work names a publisher that is no longer declared."""


def pending_work(active: Iterable[WorkflowStatus]) -> dict[str, dict[str, int]]:
    """Counts of PENDING and ENQUEUED workflows per queue (publisher queues and recovery)."""
    counts: dict[str, Counter[str]] = {BATCH_QUEUE: Counter(), CHUNK_QUEUE: Counter()}
    for wf in active:
        counts.setdefault(wf.queue_name or "(no queue)", Counter())[wf.status] += 1
    return {queue: {s: c[s] for s in ACTIVE_STATUSES} for queue, c in sorted(counts.items())}


def dead_work(dead: Iterable[WorkflowStatus]) -> dict[str, dict[str, int]]:
    """Counts of workflows that ended without succeeding, per workflow (publish_batch,
    publish_chunk) and status: work that will not publish unless someone acts (`dbos workflow
    resume`, or a new batch). Keyed by name: a cancelled workflow leaves its queue."""
    counts: dict[str, Counter[str]] = {}
    for wf in dead:
        counts.setdefault(wf.name, Counter())[wf.status] += 1
    return {name: dict(sorted(c.items())) for name, c in sorted(counts.items())}


def find_orphans(settings: Settings, active: Iterable[WorkflowStatus]) -> Counter[str]:
    """Pending or enqueued publisher workflows whose publisher is not declared, per name."""
    declared = {d.name for d in settings.publishers}
    return Counter(
        wf.config_name
        for wf in active
        if wf.class_name == PUBLISHER_CLASS_NAME
        and wf.config_name is not None
        and wf.config_name not in declared
    )


def refuse_orphans(settings: Settings, active: Iterable[WorkflowStatus]) -> None:
    orphans = find_orphans(settings, active)
    if orphans:
        names = ", ".join(f"'{name}' ({count} workflows)" for name, count in orphans.items())
        raise OrphanedWorkError(
            f"pending work needs publishers that are not declared: {names}; declare them again "
            f"in the publishers file, or cancel their {BATCH_WORKFLOW} workflows with "
            "`dbos workflow cancel`"
        )
