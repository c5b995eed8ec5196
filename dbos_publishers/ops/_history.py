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

from dbos import DBOSClient, StepInfo, WorkflowStatus
from rich.table import Table

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers._config import ConfigError, Settings
from dbos_publishers._dbos_gateway import DEAD_STATUSES
from dbos_publishers._ids import batch_workflow_id
from dbos_publishers._publisher import CHUNK_WORKFLOW
from dbos_publishers.ops._tables import render as render_tables
from dbos_publishers.ops._tables import table
from dbos_publishers.store import _leases as leases
from dbos_publishers.store._database import (
    app_tables_exist,
    require_reachable,
    short_lived_engine,
    system_tables_exist,
)
from dbos_publishers.store._leases import TakeoverRow

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
        "workflows": workflows,
        "replayed_steps": sum(w["replayed_steps"] for w in workflows),
        "taken_over_workflows": sum(1 for w in workflows if w["taken_over"]),
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


def summarize(description: dict[str, Any]) -> dict[str, Any]:
    """Workflows by status, chunks committed and failed, replays, takeovers and executors."""
    workflows = description["workflows"]
    chunks = [w for w in workflows if w["name"] == CHUNK_WORKFLOW]
    failed = [w["workflow_id"] for w in chunks if w["status"] in DEAD_STATUSES]
    return {
        "workflows": len(workflows),
        "by_status": dict(sorted(Counter(w["status"] for w in workflows).items())),
        "chunks": len(chunks),
        "chunks_committed": sum(1 for w in chunks if w["status"] == "SUCCESS"),
        "failed_chunks": len(failed),
        "failed_chunk_ids": failed[:MAX_LISTED],
        "replayed_steps": description["replayed_steps"],
        "taken_over_workflows": description["taken_over_workflows"],
        "executors": dict(sorted(Counter(w["executor_id"] or "-" for w in workflows).items())),
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
    return {**description, "summary": summarize(description), "workflows": workflows}


def render(description: dict[str, Any], detail: Detail = Detail()) -> str:
    summary = summarize(description)
    lines = [
        f"Batch {description['batch_id']}: {summary['workflows']} workflows, "
        f"{description['replayed_steps']} steps replayed from checkpoints after a restart, "
        f"{description['taken_over_workflows']} workflows taken over from a gone worker",
        "  by status: " + ", ".join(f"{k}={v}" for k, v in summary["by_status"].items()),
        f"  chunks: {summary['chunks_committed']} of {summary['chunks']} committed, "
        f"{summary['failed_chunks']} failed"
        + (f" ({', '.join(summary['failed_chunk_ids'])})" if summary["failed_chunk_ids"] else ""),
        "  executors: " + ", ".join(f"{k} ({v})" for k, v in summary["executors"].items()),
    ]
    if not detail.any:
        lines.append("  (details: --steps, --failed or --replayed)")
    parts: list[Table | str] = ["\n".join(lines)]
    chosen = select(description, detail) if detail.any else []
    if detail.any and not chosen:
        parts.append("no workflow has what the filter asks for")
    for wf in chosen:
        parts += _workflow_parts(wf)
    return render_tables(*parts)


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
