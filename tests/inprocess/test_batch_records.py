"""The batch workflow records each batch it plans, once, with its total: progress has a
denominator from the first chunk on."""

from __future__ import annotations

from dbos_publishers.store import _batch_records as batch_records
from dbos_publishers.store._database import short_lived_engine
from tests.inprocess.conftest import StartService

PUBLISHERS = """
[[publishers]]
name = "orders"
class = "dbos_publishers.contrib.events:EventPublisher"
chunk_size = 40
"""


def test_a_planned_batch_is_recorded_once_with_its_total(start_service: StartService) -> None:
    service = start_service(PUBLISHERS)
    service.publish("orders", 100, batch_id="rec-1")
    service.publish("orders", 100, batch_id="rec-1")  # the same batch again: no second row
    service.publish("orders", 7, batch_id="rec-2")

    with short_lived_engine(service.settings.app_db) as engine, engine.connect() as conn:
        one = batch_records.batch_progress(conn, "rec-1")
        recent = batch_records.recent_batches(conn)
        unknown = batch_records.batch_progress(conn, "never-submitted")

    assert one is not None
    assert (one.publisher, one.topic, one.messages, one.chunks, one.state) == (
        "orders",
        "default",
        100,
        3,
        "active",
    )
    assert (one.published, one.percent) == (100, 100.0)
    assert sorted(b.batch_id for b in recent) == ["rec-1", "rec-2"]
    assert unknown is None
