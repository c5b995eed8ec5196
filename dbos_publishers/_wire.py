"""The wire types: what a batch workflow takes (BatchRequest), what a chunk workflow takes
(ChunkSpec) and returns (ChunkOutcome), and a batch's summary. DBOS stores them as workflow
inputs and outputs, so they are plain dicts whose keys never change meaning between releases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypedDict

# How a batch planned by this release fans out and in (a window per ENQUEUE_STEP, a window per
# AWAIT_STEP), recorded in its plan step's output: the batch needs no patch marker to replay
# that way, two system-database writes fewer before its first chunk is enqueued. A plan that
# recorded a bare chunk size is an earlier release's: its patch markers decide (_replay).
FAN_OUT_WINDOWS = "windows"


class BatchRequest(TypedDict):
    batch_id: str
    topic: str
    count: int
    messages: list[str] | None


class BatchPlan(TypedDict):
    chunk_size: int
    fan_out: str  # FAN_OUT_WINDOWS


class ChunkSpec(TypedDict):
    batch_id: str
    topic: str
    index: int
    start: int
    count: int
    messages: list[str] | None


class ChunkOutcome(TypedDict):
    index: int
    workflow_id: str
    messages: int
    published: int
    error: str | None


class BatchSummary(TypedDict):
    batch_id: str
    publisher: str
    topic: str
    messages: int
    published: int
    failed: int
    chunks: int
    failed_chunks: list[ChunkOutcome]  # every chunk not listed here published all its messages


def plan_chunks(request: BatchRequest, chunk_size: int) -> Iterator[ChunkSpec]:
    """Split a batch into chunk specs, lazily, so a huge batch never sits in memory as chunks."""
    messages = request["messages"]
    for index, start in enumerate(range(0, request["count"], chunk_size)):
        count = min(chunk_size, request["count"] - start)
        yield ChunkSpec(
            batch_id=request["batch_id"],
            topic=request["topic"],
            index=index,
            start=start,
            count=count,
            messages=messages[start : start + count] if messages is not None else None,
        )


def planned_chunk_size(plan: BatchPlan | int) -> int:
    """The chunk size a batch's plan step recorded (a bare int before FAN_OUT_WINDOWS)."""
    return plan if isinstance(plan, int) else plan["chunk_size"]
