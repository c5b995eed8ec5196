"""Unit tests for batch planning and the deterministic ids derived from it."""

from __future__ import annotations

import pytest

from app.ledger import message_id
from app.publishers.base import (
    BatchRequest,
    ChunkSpec,
    batch_workflow_id,
    chunk_workflow_id,
    plan_chunks,
)


def request(count: int, messages: list[str] | None = None) -> BatchRequest:
    return BatchRequest(batch_id="b-1", topic="orders.created", count=count, messages=messages)


def covered_positions(chunks: list[ChunkSpec]) -> list[int]:
    return [p for c in chunks for p in range(c["start"], c["start"] + c["count"])]


@pytest.mark.parametrize(
    ("count", "chunk_size", "expected_counts"),
    [
        (10, 4, [4, 4, 2]),
        (12, 4, [4, 4, 4]),
        (3, 5, [3]),
        (1, 1, [1]),
        (7, 1, [1] * 7),
        (1001, 500, [500, 500, 1]),
        (0, 4, []),
    ],
)
def test_plan_chunks_covers_every_position_once_in_order(
    count: int, chunk_size: int, expected_counts: list[int]
) -> None:
    chunks = list(plan_chunks(request(count), chunk_size))
    assert [c["count"] for c in chunks] == expected_counts
    assert [c["index"] for c in chunks] == list(range(len(expected_counts)))
    assert [c["start"] for c in chunks] == [i * chunk_size for i in range(len(expected_counts))]
    assert covered_positions(chunks) == list(range(count))
    assert all(c["batch_id"] == "b-1" and c["topic"] == "orders.created" for c in chunks)
    assert all(c["messages"] is None for c in chunks)


def test_plan_chunks_last_chunk_is_shorter() -> None:
    chunks = list(plan_chunks(request(10), 4))
    assert chunks[-1] == ChunkSpec(
        batch_id="b-1", topic="orders.created", index=2, start=8, count=2, messages=None
    )


def test_plan_chunks_slices_messages() -> None:
    messages = [f"m{i}" for i in range(7)]
    chunks = list(plan_chunks(request(7, messages), 3))
    assert [c["messages"] for c in chunks] == [["m0", "m1", "m2"], ["m3", "m4", "m5"], ["m6"]]
    assert [c["count"] for c in chunks] == [3, 3, 1]
    for chunk in chunks:
        assert chunk["messages"] is not None
        assert len(chunk["messages"]) == chunk["count"]
        assert chunk["messages"][0] == messages[chunk["start"]]
    assert [m for c in chunks for m in c["messages"] or []] == messages


def test_plan_chunks_is_lazy() -> None:
    chunks = plan_chunks(request(10**12), 1000)
    first = next(chunks)
    second = next(chunks)
    assert (first["start"], second["start"]) == (0, 1000)


def test_workflow_ids_are_deterministic() -> None:
    assert batch_workflow_id("b-1") == batch_workflow_id("b-1") == "batch-b-1"
    assert chunk_workflow_id("b-1", 7) == chunk_workflow_id("b-1", 7) == "batch-b-1/chunk-00007"


def test_workflow_ids_are_distinct() -> None:
    chunk_ids = {chunk_workflow_id("b-1", i) for i in range(1000)}
    assert len(chunk_ids) == 1000
    assert chunk_workflow_id("b-1", 0) != chunk_workflow_id("b-2", 0)
    assert batch_workflow_id("b-1") != batch_workflow_id("b-2")
    assert batch_workflow_id("b-1") not in chunk_ids


def test_chunk_workflow_ids_sort_in_chunk_order() -> None:
    ids = [chunk_workflow_id("b", i) for i in range(0, 20000, 7)]
    assert sorted(ids) == ids


def test_message_id_is_deterministic() -> None:
    assert message_id("b-1", 3) == message_id("b-1", 3) == "b-1:3"


def test_message_id_distinct_per_position_and_batch() -> None:
    ids = {message_id("b-1", p) for p in range(1000)}
    assert len(ids) == 1000
    assert message_id("b-1", 0) != message_id("b-2", 0)
