"""What happened to one batch: its workflows and their steps, read from DBOS's records.

A step counts as *replayed* when it completed before its workflow was last dequeued: the latest
execution began after a restart and took that step's result from its checkpoint. A workflow is
*taken over* when a surviving worker recovered it from a gone one (the takeover records in the
application database say from whom, by whom and why).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from dbos import DBOSClient, StepInfo, WorkflowStatus
from rich.table import Table

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers import _ids as ids
from dbos_publishers._config import ConfigError, Settings
from dbos_publishers._dbos_gateway import DEAD_STATUSES
from dbos_publishers._ids import batch_workflow_id
from dbos_publishers._publisher import CHUNK_WORKFLOW
from dbos_publishers.ops._tables import render as render_tables
from dbos_publishers.ops._tables import table
from dbos_publishers.store import _batch_list as batch_list
from dbos_publishers.store import _leases as leases
from dbos_publishers.store._database import (
    app_tables_exist,
    require_reachable,
    short_lived_engine,
    sqlite_file_missing,
    system_tables_exist,
)
from dbos_publishers.store._leases import TakeoverRow
from dbos_publishers.store._schema import batch_events

MAX_LISTED = 10  # failed chunk ids the summary names; --failed lists them all


def describe(settings: Settings, batch_id: str) -> dict[str, Any]:
    require_reachable(settings.system_db)
    if not system_tables_exist(settings.system_db):
        raise ConfigError(f"no batch with id {batch_id!r} (no work was ever submitted here)")
    with dbos_gateway.client(settings.system_db) as client:
        family = dbos_gateway.workflow_family(client, batch_workflow_id(batch_id))
        taken = _takeovers(settings, [wf.workflow_id for wf in family])
        workflows = [_workflow(client, wf, taken.get(wf.workflow_id, [])) for wf in family]
    if not workflows:
        raise ConfigError(f"no batch with id {batch_id!r}")
    return {
        "batch_id": batch_id,
        **_recorded(settings, batch_id),
        "workflows": workflows,
        "replayed_steps": sum(w["replayed_steps"] for w in workflows),
        "taken_over_workflows": sum(1 for w in workflows if _died(w["taken_over"])),
    }


def _died(marks: list[dict[str, Any]]) -> bool:
    """Taken over from a worker that died (a clean stop's work is adopted, not taken over)."""
    return any(mark["reason"] != "stopped" for mark in marks)


def _recorded(settings: Settings, batch_id: str) -> dict[str, Any]:
    """What the application database recorded of the batch: its list row, its lifecycle events,
    and (`_committed`, not shown) the chunks the ledger holds."""
    if sqlite_file_missing(settings.app_db):  # never created by a read
        return {"batch": None, "history": []}
    with short_lived_engine(settings.app_db) as engine, engine.connect() as conn:
        if not sa.inspect(conn).has_table(batch_events.name):
            return {"batch": None, "history": []}
        row = batch_list.batch_row(conn, batch_id)
        return {
            "batch": None if row is None else row.to_json(datetime.now(UTC)),
            "history": [e.to_json() for e in batch_list.events(conn, batch_id)],
            "_committed": sorted(batch_list.committed_chunks(conn, batch_id)),
        }


def _takeovers(settings: Settings, workflow_ids: list[str]) -> dict[str, list[TakeoverRow]]:
    if not app_tables_exist(settings.app_db):
        return {}
    with short_lived_engine(settings.app_db) as engine, engine.connect() as conn:
        return leases.takeovers_of(conn, workflow_ids)


def _workflow(client: DBOSClient, wf: WorkflowStatus, taken: list[TakeoverRow]) -> dict[str, Any]:
    restarted_at = wf.dequeued_at if (wf.recovery_attempts or 0) > 1 else None
    steps = [_step(s, restarted_at) for s in dbos_gateway.steps(client, wf.workflow_id)]
    return {
        "workflow_id": wf.workflow_id,
        "name": wf.name,
        "publisher": wf.config_name,
        "status": wf.status,
        "executor_id": wf.executor_id,
        "recovery_attempts": wf.recovery_attempts,
        "created_at": _iso(wf.created_at),
        "last_started_at": _iso(wf.dequeued_at),
        "completed_at": _iso(wf.completed_at),
        "taken_over": [
            {
                "from_executor_id": t.executor_id,
                "by_executor_id": t.by_executor_id,
                "reason": t.reason,
                "claimed_at": _iso(int(t.claimed_at * 1000)),
            }
            for t in taken
        ],
        "steps": steps,
        "replayed_steps": sum(1 for s in steps if s["replayed"]),
    }


def _step(step: StepInfo, restarted_at: int | None) -> dict[str, Any]:
    completed = step["completed_at_epoch_ms"]
    return {
        "step_id": step["function_id"],
        "name": step["function_name"],
        "started_at": _iso(step["started_at_epoch_ms"]),
        "completed_at": _iso(completed),
        "error": None if step["error"] is None else repr(step["error"]),
        "child_workflow_id": step["child_workflow_id"],
        "replayed": bool(restarted_at and completed and completed < restarted_at),
    }


def _iso(epoch_ms: int | None) -> str | None:
    if epoch_ms is None:
        return None
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Detail:
    """Which workflows and steps `inspect` lists beside its summary (none: the summary only)."""

    steps: bool = False  # every workflow with every step
    failed: bool = False  # workflows that ended without succeeding, or with a failed step
    replayed: bool = False  # workflows with replayed steps, those steps only

    @property
    def any(self) -> bool:
        return self.steps or self.failed or self.replayed


def chunk_outcome(workflow: dict[str, Any], committed: set[str] | None) -> str:
    """committed (the ledger holds its rows, whatever its workflow status says afterwards: a
    cancel can land after the commit), cancelled, failed, or pending. Without the ledger's word
    (`committed` None), a SUCCESS is committed."""
    status = workflow["status"]
    if committed is not None and workflow["workflow_id"] in committed:
        return "committed"
    if committed is None and status == "SUCCESS":
        return "committed"
    if status == "CANCELLED":
        return "cancelled"
    return "failed" if status in DEAD_STATUSES else "pending"


def _is_chunk(workflow: dict[str, Any]) -> bool:
    """A chunk workflow itself (its retries are counted under it, by the ledger)."""
    return workflow["name"] == CHUNK_WORKFLOW and ids.is_chunk(workflow["workflow_id"])


def summarize(description: dict[str, Any]) -> dict[str, Any]:
    """Workflows by status, chunks by outcome, recoveries, replays, takeovers, executors and,
    where the batch was recorded, its start, end and duration."""
    workflows = description["workflows"]
    chunks = [
        w for w in workflows if w["name"] == CHUNK_WORKFLOW and ids.is_chunk(w["workflow_id"])
    ]
    committed = set(description["_committed"]) if "_committed" in description else None
    outcomes = {w["workflow_id"]: chunk_outcome(w, committed) for w in chunks}
    by_outcome = Counter(outcomes.values())
    failed = [wid for wid, outcome in outcomes.items() if outcome == "failed"]
    batch = description.get("batch") or {}
    return {
        "workflows": len(workflows),
        "by_status": dict(sorted(Counter(w["status"] for w in workflows).items())),
        "chunks": len(chunks),
        "chunks_committed": by_outcome["committed"],
        "chunks_cancelled": by_outcome["cancelled"],
        "chunks_pending": by_outcome["pending"],
        "failed_chunks": len(failed),
        "failed_chunk_ids": failed[:MAX_LISTED],
        "recoveries": sum(max(0, (w["recovery_attempts"] or 1) - 1) for w in workflows),
        "replayed_steps": description["replayed_steps"],
        "taken_over_workflows": description["taken_over_workflows"],
        "executors": dict(sorted(Counter(w["executor_id"] or "-" for w in workflows).items())),
        "start": batch.get("started"),
        "end": batch.get("finished"),
        "duration_sec": batch.get("duration_sec"),
    }


def select(description: dict[str, Any], detail: Detail) -> list[dict[str, Any]]:
    """The workflows (and of each the steps) that `detail` asks for."""
    if detail.steps:
        return list(description["workflows"])
    chosen = []
    for wf in description["workflows"]:
        steps = [
            s
            for s in wf["steps"]
            if (detail.failed and s["error"]) or (detail.replayed and s["replayed"])
        ]
        ended_badly = detail.failed and wf["status"] in DEAD_STATUSES
        if steps or ended_badly:
            chosen.append({**wf, "steps": steps})
    return chosen


def to_json(description: dict[str, Any], detail: Detail) -> dict[str, Any]:
    """Without a filter every workflow and step, as before the summary existed (tools read it);
    with one, the workflows it selects."""
    workflows = select(description, detail) if detail.any else description["workflows"]
    shown = {k: v for k, v in description.items() if not k.startswith("_")}
    return {**shown, "summary": summarize(description), "workflows": workflows}


def render(description: dict[str, Any], detail: Detail = Detail()) -> str:
    summary = summarize(description)
    lines = [
        *_opening(description),
        f"  {summary['workflows']} workflows, {summary['recoveries']} recoveries, "
        f"{description['replayed_steps']} steps replayed from checkpoints after a restart, "
        f"{description['taken_over_workflows']} workflows taken over from a gone worker",
        "  by status: " + ", ".join(f"{k}={v}" for k, v in summary["by_status"].items()),
        f"  chunks: {summary['chunks_committed']} of {summary['chunks']} committed, "
        f"{summary['chunks_cancelled']} cancelled, {summary['chunks_pending']} pending, "
        f"{summary['failed_chunks']} failed"
        + (f" ({', '.join(summary['failed_chunk_ids'])})" if summary["failed_chunk_ids"] else ""),
        "  executors: " + ", ".join(f"{k} ({v})" for k, v in summary["executors"].items()),
    ]
    if not detail.any:
        lines.append("  (details: --steps, --failed or --replayed)")
    parts: list[Table | str] = ["\n".join(lines)]
    if description.get("history"):
        rows = [(e["at"], e["event"], e["detail"]) for e in description["history"]]
        parts.append(table(["at", "event", "detail"], rows, title="History"))
    chosen = select(description, detail) if detail.any else []
    if detail.any and not chosen:
        parts.append("no workflow has what the filter asks for")
    for wf in chosen:
        parts += _workflow_parts(wf)
    return render_tables(*parts)


def _opening(description: dict[str, Any]) -> list[str]:
    """The batch as the list shows it, when it was recorded."""
    batch = description.get("batch")
    if batch is None:
        return [f"Batch {description['batch_id']}"]
    rate = f", {batch['msg_per_sec']} msg/s" if batch["msg_per_sec"] is not None else ""
    duration = f"{batch['duration_sec']} s" if batch["duration_sec"] is not None else "-"
    return [
        f"Batch {batch['batch_id']}: {batch['state']}, publisher {batch['publisher']}, "
        f"topic {batch['topic']}",
        f"  {batch['published']} of {batch['messages']} messages published, "
        f"{batch['failed']} failed; started {batch['started'] or '-'}, "
        f"finished {batch['finished'] or '-'}, duration {duration}{rate}",
    ]


def _workflow_parts(wf: dict[str, Any]) -> list[Table | str]:
    heading = (
        f"{wf['workflow_id']}  {wf['status']}  executor={wf['executor_id']}  "
        f"attempts={wf['recovery_attempts']}  last started {wf['last_started_at']}"
    )
    heading += "".join(
        f"\n  taken over from {t['from_executor_id']} by {t['by_executor_id']} "
        f"({t['reason']}) at {t['claimed_at']}"
        for t in wf["taken_over"]
    )
    rows = [
        (
            s["step_id"],
            s["name"],
            "replayed" if s["replayed"] else "ran",
            s["completed_at"],
            s["error"] or "",
        )
        for s in wf["steps"]
    ]
    return [heading, table(["step>", "name", "", "completed", "error"], rows)]
