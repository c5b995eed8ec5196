"""A worker runs `chunk_concurrency` chunk transactions at once, while DBOS runs CHUNK_PREFETCH
times as many chunk workflows: the others are built and wait for a slot, so a slot freed never
idles until the queue's next poll."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dbos_publishers._declarations import CHUNK_PREFETCH
from dbos_publishers.testing import QUEUE_TUNING
from tests.inprocess.conftest import StartService
from tests.inprocess.publishers import IN_FLIGHT, PEAK

SLOTS = 4
assert f"chunk_concurrency = {SLOTS}\n" in QUEUE_TUNING
DECLARED = (
    '[[publishers]]\nname = "slow"\nclass = "tests.inprocess.publishers:SlowPublisher"\n'
    "chunk_size = 10\n"
)
MESSAGES = 160  # 16 chunks


@pytest.fixture(autouse=True)
def nothing_counted_yet() -> Iterator[None]:
    IN_FLIGHT.clear()
    PEAK.clear()
    yield
    IN_FLIGHT.clear()
    PEAK.clear()


def test_chunks_wait_built_for_a_transaction_slot_and_never_exceed_the_slots(
    start_service: StartService,
) -> None:
    service = start_service(DECLARED)
    summary = service.publish("slow", MESSAGES)
    assert (summary["published"], summary["failed"]) == (MESSAGES, 0)
    assert PEAK["committing"] == SLOTS  # every slot used, never one more
    assert SLOTS < PEAK["built"] <= SLOTS * CHUNK_PREFETCH  # chunks dequeued ahead, waiting
    assert IN_FLIGHT == {"committing": 0, "built": 0}
    state = service.ledger_state({"b1": MESSAGES})
    assert state.report.ok, state.report.violations
