"""`inspect`: a summary by default; --steps, --failed and --replayed pick the detail, in the
table and in JSON alike (JSON without a filter keeps every workflow, as tools read it)."""

from __future__ import annotations

from typing import Any

from dbos_publishers.ops import _history as history
from dbos_publishers.ops._history import Detail


def _step(
    step_id: int, name: str, *, replayed: bool = False, error: str | None = None
) -> dict[str, Any]:
    return {
        "step_id": step_id,
        "name": name,
        "started_at": None,
        "completed_at": "2026-12-06T00:00:00.000+00:00",
        "error": error,
        "child_workflow_id": None,
        "replayed": replayed,
    }


def _workflow(
    wid: str, name: str, status: str, executor: str, steps: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "workflow_id": wid,
        "name": name,
        "publisher": "orders",
        "status": status,
        "executor_id": executor,
        "recovery_attempts": 1,
        "created_at": None,
        "last_started_at": None,
        "completed_at": None,
        "taken_over": [],
        "steps": steps,
        "replayed_steps": sum(1 for s in steps if s["replayed"]),
    }


DESCRIPTION: dict[str, Any] = {
    "batch_id": "b",
    "workflows": [
        _workflow(
            "batch-b", "publish_batch", "PENDING", "w1", [_step(1, "plan_batch", replayed=True)]
        ),
        _workflow(
            "batch-b/chunk-00000", "publish_chunk", "SUCCESS", "w1", [_step(1, "record_chunk")]
        ),
        _workflow(
            "batch-b/chunk-00001",
            "publish_chunk",
            "ERROR",
            "w2",
            [_step(1, "record_chunk", error="FailpointError('x')")],
        ),
        _workflow("batch-b/chunk-00002", "publish_chunk", "ENQUEUED", None, []),  # type: ignore[arg-type]
    ],
    "replayed_steps": 1,
    "taken_over_workflows": 0,
}


def test_the_summary_counts_statuses_chunks_replays_and_executors() -> None:
    assert history.summarize(DESCRIPTION) == {
        "workflows": 4,
        "by_status": {"ENQUEUED": 1, "ERROR": 1, "PENDING": 1, "SUCCESS": 1},
        "chunks": 3,
        "chunks_committed": 1,
        "chunks_cancelled": 0,
        "chunks_pending": 1,
        "failed_chunks": 1,
        "failed_chunk_ids": ["batch-b/chunk-00001"],
        "recoveries": 0,
        "replayed_steps": 1,
        "taken_over_workflows": 0,
        "executors": {"-": 1, "w1": 2, "w2": 1},
        "start": None,
        "end": None,
        "duration_sec": None,
    }


def test_a_chunk_in_the_ledger_is_committed_whatever_its_status_cancelled_is_not_failed() -> None:
    """The miscount after a cancel: chunk workflows CANCELLED after their rows committed were
    neither committed nor cancelled but "failed"."""
    chunks = [
        _workflow(f"batch-b/chunk-{i:05d}", "publish_chunk", status, "w1", [])
        for i, status in enumerate(["SUCCESS", "CANCELLED", "CANCELLED", "ERROR"])
    ]
    chunks.append(_workflow("batch-b/chunk-00003/retry-1", "publish_chunk", "SUCCESS", "w1", []))
    chunks[1]["recovery_attempts"] = 3  # started twice more after its first run
    described = {
        **DESCRIPTION,
        "workflows": [DESCRIPTION["workflows"][0], *chunks],
        "_committed": ["batch-b/chunk-00000", "batch-b/chunk-00001", "batch-b/chunk-00003"],
        "batch": {"started": "s", "finished": "f", "duration_sec": 1.5},
    }
    summary = history.summarize(described)
    counts = [summary[k] for k in ("chunks", "chunks_committed", "chunks_cancelled")]
    assert counts == [4, 3, 1]
    assert (summary["failed_chunks"], summary["recoveries"]) == (0, 2)
    assert (summary["start"], summary["end"], summary["duration_sec"]) == ("s", "f", 1.5)
    assert "_committed" not in history.to_json(described, Detail())


def test_without_a_filter_the_table_is_the_summary_only() -> None:
    text = history.render(DESCRIPTION)
    assert "1 of 3 committed, 0 cancelled, 1 pending, 1 failed (batch-b/chunk-00001)" in text
    assert "record_chunk" not in text and "plan_batch" not in text


def test_each_filter_selects_its_workflows_and_steps() -> None:
    def picked(detail: Detail) -> dict[str, list[str]]:
        return {
            w["workflow_id"]: [s["name"] for s in w["steps"]]
            for w in history.select(DESCRIPTION, detail)
        }

    assert picked(Detail(failed=True)) == {"batch-b/chunk-00001": ["record_chunk"]}
    assert picked(Detail(replayed=True)) == {"batch-b": ["plan_batch"]}
    assert len(picked(Detail(steps=True))) == 4
    both = picked(Detail(failed=True, replayed=True))
    assert set(both) == {"batch-b", "batch-b/chunk-00001"}


def test_json_carries_the_summary_and_the_same_filters() -> None:
    everything = history.to_json(DESCRIPTION, Detail())
    assert len(everything["workflows"]) == 4 and everything["summary"]["failed_chunks"] == 1
    failed = history.to_json(DESCRIPTION, Detail(failed=True))
    assert [w["workflow_id"] for w in failed["workflows"]] == ["batch-b/chunk-00001"]
    assert "FailpointError" in history.render(DESCRIPTION, Detail(failed=True))
