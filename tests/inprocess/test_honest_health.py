"""Honest health on SQLite in this process: a batch cancelled by `cancel` is not dead work (status
stays healthy, the dead-work metric stays empty) while a workflow cancelled behind the service's
back still is; the API refuses a publisher that live workers do not declare, and accepts it when
no worker runs or a worker of an earlier release (which declared nothing) does."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers import _lifecycle as lifecycle
from dbos_publishers._config import DatabaseUrl
from dbos_publishers._ids import batch_workflow_id
from dbos_publishers.ops import _status as status
from dbos_publishers.store import _leases as leases
from dbos_publishers.store._database import short_lived_engine
from dbos_publishers.store._leases import WorkerIdentity
from dbos_publishers.store._schema import worker_publishers
from tests.helpers import published, wait_until
from tests.inprocess.conftest import StartService, served_api

PUBLISHERS = """
[[publishers]]
name = "orders"
class = "dbos_publishers.contrib.events:EventPublisher"
chunk_size = 10
"""
PACED = "chunk.start=delay(100)@every"


def _dead_samples(collector: status.StateCollector) -> list[tuple[str, str, float]]:
    found = [m for m in collector.collect() if m.name == "publisher_dead_workflows"]
    return [(s.labels["workflow"], s.labels["status"], s.value) for s in found[0].samples]


def test_a_cancelled_batch_is_not_dead_work_but_a_workflow_cancelled_behind_its_back_is(
    start_service: StartService,
) -> None:
    service = start_service(PUBLISHERS, failpoint_spec=PACED)
    service.submit("orders", 100, "chosen")
    wait_until(lambda: published(service.settings.app_db, "chosen") >= 20, "20 messages published")
    lifecycle.act(service.settings, "cancel", "chosen")
    snapshot = status.gather(service.settings)
    assert (snapshot.dead, snapshot.healthy) == ({}, True)
    collector = status.StateCollector(service.settings)
    assert _dead_samples(collector) == []

    service.submit("orders", 10, "behind")
    with dbos_gateway.client(service.settings.system_db) as client:
        dbos_gateway.cancel(client, [batch_workflow_id("behind")])
    snapshot = status.gather(service.settings)
    assert snapshot.dead == {"publish_batch": {"CANCELLED": 1}}
    assert not snapshot.healthy
    assert _dead_samples(collector) == [("publish_batch", "CANCELLED", 1.0)]


def _live_worker(app_db: DatabaseUrl, name: str, *publishers: str) -> None:
    me = WorkerIdentity(name, name, "1", "host", 1, "token", lease_ttl_sec=600.0)
    with short_lived_engine(app_db) as engine, engine.begin() as conn:
        leases.register(conn, me)
        leases.declare_publishers(conn, name, publishers)


def test_the_api_refuses_a_publisher_no_live_worker_declares(tmp_path: Path) -> None:
    publishers = PUBLISHERS + '\n[[publishers]]\nname = "billing"\nchunk_size = 5\n'
    with served_api(tmp_path, publishers) as (http, settings):
        alone = http.post("/batches", json={"publisher": "billing", "count": 5, "batch_id": "a"})
        _live_worker(settings.app_db, "w1", "orders")
        refused = http.post("/batches", json={"publisher": "billing", "count": 5, "batch_id": "r"})
        served = http.post("/batches", json={"publisher": "orders", "count": 5, "batch_id": "s"})
        listed = [b["batch_id"] for b in http.get("/batches").json()["batches"]]
        _live_worker(settings.app_db, "w0", "orders")  # an earlier release: declared nothing
        with short_lived_engine(settings.app_db) as engine, engine.begin() as conn:
            conn.execute(sa.delete(worker_publishers).where(worker_publishers.c.worker_id == "w0"))
        old = http.post("/batches", json={"publisher": "billing", "count": 5, "batch_id": "o"})
    assert alone.status_code == 202  # no worker at all: it waits durably
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        "no running worker declares publisher 'billing' (they run: orders); restart the workers "
        "so they read the publishers file again"
    )
    assert served.status_code == 202
    assert listed == ["s", "a"]  # the refused batch was never recorded
    assert old.status_code == 202
