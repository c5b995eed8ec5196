"""`status` read again and again while a batch publishes: every frame agrees with itself (local,
global and ledger rows), and the frames do catch the batch half-way."""

from __future__ import annotations

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers.ops import _status as status
from dbos_publishers.store import _invariants as invariants
from tests.inprocess.conftest import StartService

PUBLISHERS = """
[[publishers]]
name = "orders"
class = "dbos_publishers.contrib.events:EventPublisher"
chunk_size = 10
"""
TOTAL = 60  # 6 chunks, 4 at a time, each held 100 ms before its commit


def test_every_status_frame_during_a_batch_is_self_consistent(start_service: StartService) -> None:
    service = start_service(PUBLISHERS, failpoint_spec="chunk.before_commit=delay(100)@every")
    workflow_id = service.submit("orders", TOTAL, "frames")
    frames = []
    with dbos_gateway.client(service.settings.system_db) as client:
        while True:
            done = dbos_gateway.workflows(client, [workflow_id])[0].status == "SUCCESS"
            frame = status.gather(service.settings)
            frames.append(frame)
            assert frame.consistent, frame.violations
            assert invariants.agree(frame.local_counters, frame.global_counters) == []
            for topic in frame.global_counters:  # one topic: its counter is the frame's ledger
                assert topic.global_counter == frame.ledger_rows == topic.ledger_rows
            if done:
                break
    assert frames[-1].ledger_rows == TOTAL
    half_way = [f for f in frames if 0 < f.ledger_rows < TOTAL]
    assert half_way, [f.ledger_rows for f in frames]  # the reads did overlap the commits
    (batch,) = frames[-1].batches
    assert (batch.batch_id, batch.published, batch.messages) == ("frames", TOTAL, TOTAL)
