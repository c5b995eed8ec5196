"""What the dashboard's JSON routes answer: response models, so the OpenAPI spec says it too."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from dbos_publishers.ops._batch_routes import ListedBatch
from dbos_publishers.ops._fleet_view import WorkerView


class CounterSample(BaseModel):
    publisher: str
    topic: str
    local_counter: int = Field(description="messages published so far (commits with the ledger)")


class QueueDepth(BaseModel):
    queue: str
    pending: int = Field(description="workflows running (or stopped mid-run, to recover)")
    enqueued: int = Field(description="workflows waiting for a worker")


class BatchView(BaseModel):
    batch_id: str
    publisher: str
    topic: str
    messages: int
    chunks: int
    published: int
    percent: float
    status: str | None = Field(description="the batch workflow's DBOS status")
    failed_chunks: int = Field(description="chunk workflows that ended without succeeding")


class TakeoverView(BaseModel):
    executor_id: str = Field(description="the worker that was gone")
    by_executor_id: str = Field(description="the worker that took its work over")
    reason: str
    claimed_at: float = Field(description="seconds since the epoch")
    workflows: int | None = Field(description="workflows it recovered (None: not yet)")


class Invariant(BaseModel):
    consistent: bool
    sentence: str = Field(description="the check in plain words")
    violations: list[str]


class Overview(BaseModel):
    """Everything the dashboard shows but a batch's timeline, read in one request."""

    publishers: list[str]
    counters: list[CounterSample]
    ledger_rows: int
    queues: list[QueueDepth]
    batches: list[BatchView]
    workers: list[WorkerView]  # as `workers --json` shows them
    takeovers: list[TakeoverView]
    takeovers_total: int
    recovered_at_start: int = Field(description="PENDING workflows this process recovered")
    failpoints_fired: dict[str, int] = Field(description="failpoint -> firings in this process")
    invariant: Invariant


class StepMark(BaseModel):
    step_id: int
    name: str
    started_at: str | None
    completed_at: str | None
    error: str | None
    replayed: bool = Field(description="taken from its checkpoint after a restart")


class TakeoverMark(BaseModel):
    from_executor_id: str
    by_executor_id: str
    reason: str
    claimed_at: str | None


class WorkflowTimeline(BaseModel):
    workflow_id: str
    name: str
    publisher: str | None
    status: str
    executor_id: str | None
    recovery_attempts: int | None
    created_at: str | None
    last_started_at: str | None
    completed_at: str | None
    taken_over: list[TakeoverMark]
    steps: list[StepMark]
    replayed_steps: int


class HistoryEvent(BaseModel):
    event: str = Field(description="submitted, started, cancelled, resumed, retried, finished")
    at: str | None
    detail: str


class BatchTimeline(BaseModel):
    """A batch's workflows (the batch first, then its chunks) and their steps, replays marked,
    its row of the batch list, its lifecycle history and summary: what `inspect` prints."""

    batch_id: str
    batch: ListedBatch | None = Field(description="as GET /batches lists it (None: not recorded)")
    history: list[HistoryEvent]
    summary: dict[str, Any] = Field(description="as `inspect --json` has it: chunks by outcome")
    workflows: list[WorkflowTimeline]
    replayed_steps: int
    taken_over_workflows: int
