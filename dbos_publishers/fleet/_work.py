"""Work still to do, read from DBOS's active workflows: counts per queue, and orphans (pending
work of a publisher that is not declared here, which this process cannot run)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from dbos import WorkflowStatus

from dbos_publishers import _ids as ids
from dbos_publishers._config import Settings
from dbos_publishers._dbos_gateway import ACTIVE_STATUSES
from dbos_publishers._errors import StateError
from dbos_publishers._publisher import PUBLISHER_CLASS_NAME
from dbos_publishers._queues import BATCH_QUEUE, CHUNK_QUEUE

MAX_LISTED_WORKFLOWS = 10  # a warning names this many batches; `status` counts them all
CANCEL_COMMAND = (
    "python -m app cancel"  # dbos_publishers._lifecycle: the batch and all its chunks, exactly
)


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
    publish_chunk) and status: work that will not publish unless someone acts (`python -m app
    resume` or `retry`, or a new batch). Keyed by name: a cancelled workflow leaves its queue."""
    counts: dict[str, Counter[str]] = {}
    for wf in dead:
        counts.setdefault(wf.name, Counter())[wf.status] += 1
    return {name: dict(sorted(c.items())) for name, c in sorted(counts.items())}


def orphaned_workflows(
    settings: Settings, active: Iterable[WorkflowStatus]
) -> dict[str, list[str]]:
    """Pending or enqueued publisher workflows whose publisher is not declared: their ids per
    publisher name."""
    declared = {d.name for d in settings.publishers}
    found: dict[str, list[str]] = {}
    for wf in active:
        name = wf.config_name
        if wf.class_name == PUBLISHER_CLASS_NAME and name is not None and name not in declared:
            found.setdefault(name, []).append(wf.workflow_id)
    return {name: sorted(ids) for name, ids in sorted(found.items())}


def find_orphans(settings: Settings, active: Iterable[WorkflowStatus]) -> Counter[str]:
    """How many orphaned workflows each undeclared publisher has."""
    return Counter({name: len(ids) for name, ids in orphaned_workflows(settings, active).items()})


def batch_ids(workflow_ids: Iterable[str]) -> list[str]:
    """The batches these batch and chunk workflows belong to (`batch-<id>[/chunk-<n>...]`)."""
    return sorted({ids.batch_of(wf) for wf in workflow_ids})


def orphan_resolution(publisher: str, workflow_ids: list[str]) -> str:
    """The two ways out, as commands: declare the publisher again, or cancel its batches (each
    with all its chunks, and nothing of it published afterwards)."""
    batches = batch_ids(workflow_ids)
    shown = batches[:MAX_LISTED_WORKFLOWS]
    cancel = "; ".join(f"{CANCEL_COMMAND} {batch}" for batch in shown)
    more = len(batches) - len(shown)
    rest = f" (and {more} more batches: `python -m app status` counts them)" if more else ""
    return (
        f"declare publisher '{publisher}' again in the publishers file (APP_PUBLISHERS_FILE) "
        f"and restart, or give its work up: {cancel}{rest}"
    )


def refuse_orphans(settings: Settings, active: Iterable[WorkflowStatus]) -> None:
    orphans = find_orphans(settings, active)
    if orphans:
        names = ", ".join(f"'{name}' ({count} workflows)" for name, count in orphans.items())
        raise OrphanedWorkError(
            f"pending work needs publishers that are not declared: {names}; declare them again "
            f"in the publishers file, or cancel their batches with `{CANCEL_COMMAND} BATCH_ID`"
        )
