"""Unit tests for batch planning and the deterministic ids derived from it."""

from __future__ import annotations

import pytest

from dbos_publishers._ids import batch_workflow_id, chunk_workflow_id
from dbos_publishers._publisher import RESULT_POLL_MAX_SEC, poll_delay
from dbos_publishers._replay import RESULT_POLL_SEC
from dbos_publishers._wire import BatchRequest, ChunkSpec, plan_chunks
from dbos_publishers.contrib.events import EventPublisher
from dbos_publishers.store._ledger import ChunkEntries, LedgerEntry, message_id


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


def _chunk_entries(payloads: list[str]) -> ChunkEntries:
    return ChunkEntries(
        batch_id="b", publisher="p", topic="t", chunk_workflow_id="wf", start=10, payloads=payloads
    )


def test_chunk_entries_are_the_ledger_entries_a_hook_reads() -> None:
    entries = _chunk_entries(["x", "y", "z"])
    expected = [
        LedgerEntry(message_id("b", 10 + i), "b", 10 + i, "p", "t", v, "wf")
        for i, v in enumerate("xyz")
    ]
    assert list(entries) == expected
    assert (len(entries), entries[0], entries[-1], entries[1:]) == (
        3,
        expected[0],
        expected[2],
        expected[1:],
    )
    with pytest.raises(IndexError):
        entries[3]


def test_chunk_entries_copy_text_escapes_only_what_copy_needs() -> None:
    text = _chunk_entries(["a\tb", "c\\d", "e\nf\r"]).copy_text()
    assert text.splitlines() == [
        "b:10\tb\t10\tp\tt\ta\\tb\twf",
        "b:11\tb\t11\tp\tt\tc\\\\d\twf",
        "b:12\tb\t12\tp\tt\te\\nf\\r\twf",
    ]


def test_event_publisher_builds_a_chunk_as_body_does_message_by_message() -> None:
    publisher = EventPublisher.__new__(EventPublisher)  # no DBOS registration needed here
    publisher.name = "orders"
    chunk = ChunkSpec(batch_id="b1", topic="t", index=2, start=40, count=5, messages=None)
    assert publisher.bodies(chunk) == [publisher.body(chunk, p) for p in range(40, 45)]
    assert publisher.body(chunk, 41) == '{"publisher":"orders","topic":"t","batch":"b1","seq":41}'


def test_a_subclass_body_is_honoured_by_bodies() -> None:
    class Shouting(EventPublisher):
        def body(self, chunk: ChunkSpec, position: int) -> str:
            return f"#{position}!"

    publisher = Shouting.__new__(Shouting)
    publisher.name = "orders"
    chunk = ChunkSpec(batch_id="b1", topic="t", index=0, start=0, count=2, messages=None)
    assert publisher.bodies(chunk) == ["#0!", "#1!"]


def test_messages_given_with_the_batch_are_its_bodies_verbatim() -> None:
    class Shouting(EventPublisher):
        def body(self, chunk: ChunkSpec, position: int) -> str:
            return f"#{position}!"

    shouting, plain = Shouting.__new__(Shouting), EventPublisher.__new__(EventPublisher)
    shouting.name = plain.name = "orders"
    chunk = ChunkSpec(batch_id="b1", topic="t", index=0, start=7, count=2, messages=["m", "n"])
    assert list(shouting.bodies(chunk)) == ["m", "n"]
    assert list(plain.bodies(chunk)) == ["m", "n"]


def test_a_batch_polls_its_window_at_the_pace_of_the_last_interval() -> None:
    # 8 chunks ended in the last 0.4 s and 4 are left: about 0.2 s, read again in half of it
    assert poll_delay(0.4, 8, 4, last=0.25) == pytest.approx(0.1)
    # far from the end, or a pace read off one early chunk: the cap, so a window whose chunks
    # then end together is seen at most that late
    assert poll_delay(0.25, 1, 12, last=0.05) == RESULT_POLL_MAX_SEC
    assert poll_delay(0.2, 20, 1, last=0.25) == RESULT_POLL_SEC  # the end is near: the floor
    # none ended (queued behind other batches): the last sleep half as long again, up to the cap
    assert poll_delay(0.05, 0, 10, last=0.05) == pytest.approx(0.075)
    assert poll_delay(0.25, 0, 10, last=RESULT_POLL_MAX_SEC) == RESULT_POLL_MAX_SEC
    # a window that waited long before its chunks ran is read by its recent pace, not its age
    assert poll_delay(0.25, 30, 30, last=RESULT_POLL_MAX_SEC) == pytest.approx(0.125)
