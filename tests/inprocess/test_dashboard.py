"""The dashboard's JSON, from the service built in this process on SQLite: a batch with its
progress and chunks, the invariant in plain words (and what disagrees when a counter is off), a
batch's timeline, and the token rule: the page is open, its data is not."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers.ops._api import create_app, serve_in_thread
from dbos_publishers.store._database import short_lived_engine
from dbos_publishers.store._schema import counter_deltas
from tests.inprocess.conftest import InProcessService, StartService

PUBLISHERS = """
[[publishers]]
name = "orders"
class = "dbos_publishers.contrib.events:EventPublisher"
chunk_size = 40
"""


@contextmanager
def served(service: InProcessService, token: str | None = None) -> Iterator[httpx.Client]:
    with dbos_gateway.client(service.settings.system_db) as client:
        app = create_app(service.settings, client, token=token, recovered_at_start=3)
        server = serve_in_thread(app, "127.0.0.1", 0)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                yield http
        finally:
            server.should_exit = True


def test_the_overview_shows_a_batch_its_counters_and_that_they_agree(
    start_service: StartService,
) -> None:
    service = start_service(PUBLISHERS)
    service.publish("orders", 100, batch_id="dash-1")
    with served(service) as http:
        overview = http.get("/dashboard/overview").json()

    (batch,) = overview["batches"]
    assert batch == {
        "batch_id": "dash-1",
        "publisher": "orders",
        "topic": "default",
        "messages": 100,
        "chunks": 3,
        "published": 100,
        "percent": 100.0,
        "status": "SUCCESS",
        "failed_chunks": 0,
    }
    assert overview["counters"] == [
        {"publisher": "orders", "topic": "default", "local_counter": 100}
    ]
    assert overview["invariant"] == {
        "consistent": True,
        "sentence": "Every counter agrees with the ledger: 1 local and 1 global counters match "
        "its 100 rows.",
        "violations": [],
    }
    assert overview["recovered_at_start"] == 3
    assert [q["queue"] for q in overview["queues"]] == ["publisher_batches", "publisher_chunks"]


def test_a_counter_off_by_one_is_named_in_the_sentence(start_service: StartService) -> None:
    service = start_service(PUBLISHERS)
    service.publish("orders", 50, batch_id="dash-2")
    with short_lived_engine(service.settings.app_db) as engine, engine.begin() as conn:
        # One more than the ledger holds, folded or not: a delta row no chunk wrote.
        conn.execute(counter_deltas.insert().values(publisher="orders", topic="default", amount=1))
    with served(service) as http:
        invariant = http.get("/dashboard/overview").json()["invariant"]
    assert invariant["consistent"] is False
    assert invariant["sentence"].startswith("Counters disagree with the ledger: ")
    assert "local counter orders/default = 51, ledger has 50" in invariant["sentence"]


def test_a_failed_chunk_is_counted_against_its_batch(start_service: StartService) -> None:
    service = start_service(PUBLISHERS, failpoint_spec="chunk.before_commit=raise@2")
    service.publish("orders", 120, batch_id="dash-3")
    with served(service) as http:
        (batch,) = http.get("/dashboard/overview").json()["batches"]
    assert (batch["failed_chunks"], batch["published"], batch["chunks"]) == (1, 80, 3)


def test_a_batch_timeline_lists_its_chunks_and_an_unknown_batch_is_404(
    start_service: StartService,
) -> None:
    service = start_service(PUBLISHERS)
    service.publish("orders", 100, batch_id="dash-4")
    with served(service) as http:
        timeline = http.get("/batches/dash-4/timeline").json()
        missing = http.get("/batches/nope/timeline")
    ids = [wf["workflow_id"] for wf in timeline["workflows"]]
    assert ids == ["batch-dash-4", *(f"batch-dash-4/chunk-{i:05d}" for i in range(3))]
    assert timeline["replayed_steps"] == 0
    assert all(not step["replayed"] for wf in timeline["workflows"] for step in wf["steps"])
    assert missing.status_code == 404 and "no batch with id 'nope'" in missing.json()["detail"]


def test_with_a_token_the_page_is_served_and_its_data_is_not(start_service: StartService) -> None:
    service = start_service(PUBLISHERS)
    with served(service, token="t0ken") as http:
        page = http.get("/dashboard")
        script = http.get("/dashboard/static/dashboard.js")
        refused = http.get("/dashboard/overview")
        allowed = http.get("/dashboard/overview", headers={"Authorization": "Bearer t0ken"})
        home = http.get("/", follow_redirects=False)
    assert page.status_code == 200 and 'id="auth"' in page.text
    assert script.status_code == 200 and "sessionStorage" in script.text
    assert refused.status_code == 401
    assert allowed.status_code == 200
    assert (home.status_code, home.headers["location"]) == (307, "/dashboard")
