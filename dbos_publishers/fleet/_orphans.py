"""Orphaned work: pending work of a publisher that is not declared here, which this process
cannot run. Named at start (one warning per publisher, with the commands that resolve it),
refused by `upgrade`, counted by `status`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from dbos import WorkflowStatus

from dbos_publishers import _ids as ids
from dbos_publishers._config import CLI, Settings
from dbos_publishers._errors import StateError
from dbos_publishers._publisher import PUBLISHER_CLASS_NAME

MAX_LISTED_WORKFLOWS = 10  # a warning names this many batches; `status` counts them all
CANCEL_COMMAND = f"{CLI} cancel"  # _lifecycle: the batch and all its chunks, exactly


class OrphanedWorkError(StateError):
    """Pending work names a publisher that is no longer declared."""


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
    rest = f" (and {more} more batches: `{CLI} status` counts them)" if more else ""
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
