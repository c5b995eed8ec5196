"""The HTTP API over real loopback HTTP, against the real service and real databases."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from alembic import command

from dbos_publishers import _migrate as migrate
from dbos_publishers._config import Settings
from dbos_publishers.ops import _api as api_module
from tests.helpers import ServiceRunner


@pytest.fixture
def api(service: ServiceRunner) -> Iterator[httpx.Client]:
    """The real service in a subprocess, serving its API on a free loopback port."""
    base = service.enable_http()
    service.start()
    with httpx.Client(base_url=base, timeout=30) as client:
        yield client


def _wait_success(api: httpx.Client, batch_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state: dict[str, Any] = api.get(f"/batches/{batch_id}").json()
        if state["status"] == "SUCCESS":
            return state
        time.sleep(0.2)
    raise AssertionError(f"batch {batch_id} did not finish: {state}")


@pytest.mark.slow
def test_submit_watch_and_read_counters_over_http(api: httpx.Client) -> None:
    accepted = api.post("/batches", json={"publisher": "orders", "count": 300, "batch_id": "h1"})
    assert accepted.status_code == 202, accepted.text
    assert accepted.json() == {
        "batch_id": "h1",
        "workflow_id": "batch-h1",
        "status_url": "/batches/h1",
    }
    state = _wait_success(api, "h1")
    assert state["published"] == 300
    assert state["summary"]["published"] == 300
    counters = api.get("/publishers").json()
    assert counters["local_counters"] == [
        {"publisher": "orders", "topic": "default", "local_counter": 300, "ledger_rows": 300}
    ]
    assert counters["consistent"] is True


@pytest.mark.slow
def test_resubmitting_a_batch_is_idempotent_and_a_changed_one_is_refused(
    api: httpx.Client, service: ServiceRunner
) -> None:
    body = {"publisher": "orders", "count": 40, "batch_id": "same"}
    assert api.post("/batches", json=body).status_code == 202
    _wait_success(api, "same")
    assert api.post("/batches", json=body).status_code == 202
    changed = api.post("/batches", json={**body, "count": 41})
    assert changed.status_code == 409
    assert "already submitted with a different" in changed.json()["detail"]
    assert service.check({"same": 40}).ledger_rows == 40


@pytest.mark.slow
@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        ({"publisher": "nobody", "count": 5}, 422, "orders"),
        ({"publisher": "orders", "count": 5, "topic": "Bad Topic"}, 422, "pattern"),
        ({"publisher": "orders", "count": 5, "batch_id": "a/b"}, 422, "pattern"),
        ({"publisher": "orders", "count": 0}, 422, "greater than 0"),
        ({"publisher": "orders"}, 422, "count"),
    ],
)
def test_bad_requests_get_a_clear_4xx_and_write_nothing(
    api: httpx.Client, service: ServiceRunner, body: dict[str, Any], code: int, fragment: str
) -> None:
    response = api.post("/batches", json=body)
    assert response.status_code == code
    assert fragment in response.text
    # A batch written by mistake would be active, or (done already) in the ledger.
    assert service.active_workflows() == []
    assert service.ledger_rows() == 0


@pytest.mark.slow
def test_probes_and_metrics(api: httpx.Client) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "system_database": True,
        "app_database": True,
        "migrations_at_head": True,
    }
    api.post("/batches", json={"publisher": "orders", "count": 120, "batch_id": "m1"})
    _wait_success(api, "m1")
    scrape = api.get("/metrics")
    assert scrape.headers["content-type"].startswith("text/plain")
    text = scrape.text
    assert 'publisher_messages_published_total{publisher="orders",topic="default"} 120.0' in text
    assert 'publisher_chunk_seconds_count{publisher="orders"} 3.0' in text
    assert 'publisher_queue_depth{queue="publisher_chunks",status="ENQUEUED"} 0.0' in text
    assert "publisher_recovered_workflows 0.0" in text
    assert re.search(r"^publisher_counter_deltas_unfolded [0-9.]+$", text, re.MULTILINE)


@pytest.mark.slow
def test_openapi_is_served(api: httpx.Client) -> None:
    spec = api.get("/openapi.json").json()
    assert {"/batches", "/batches/{batch_id}", "/publishers", "/healthz", "/readyz"} <= set(
        spec["paths"]
    )


@pytest.mark.slow
def test_bearer_token_guards_the_api_but_not_the_probes(service: ServiceRunner) -> None:
    base = service.enable_http()
    service.extra_env["APP_API_TOKEN"] = "t0ken"
    service.start()
    body = {"publisher": "orders", "count": 5, "batch_id": "guarded"}
    with httpx.Client(base_url=base, timeout=30) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert client.post("/batches", json=body).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert client.get("/publishers", headers=wrong).status_code == 401
        assert client.get("/metrics").status_code == 401
        assert service.active_workflows() == []
        right = {"Authorization": "Bearer t0ken"}
        assert client.post("/batches", json=body, headers=right).status_code == 202


@pytest.mark.slow
def test_metrics_count_recoveries_and_failpoint_hits(service: ServiceRunner) -> None:
    base = service.enable_http()
    service.declare(chunk_size=20, chunk_concurrency=1)
    service.start("chunk.before_commit=crash@3")
    service.publish("orders", 100, "recovered")
    assert service.wait_exit() == -signal.SIGKILL
    service.start("chunk.start=delay(1)@every")
    service.wait_batch("recovered")
    with httpx.Client(base_url=base, timeout=30) as client:
        text = client.get("/metrics").text
    recovered = re.search(r"^publisher_recovered_workflows (\d+)\.0$", text, re.M)
    assert recovered is not None and int(recovered.group(1)) >= 2  # the batch and a chunk
    fired = re.search(
        r'^publisher_failpoint_fired_total\{failpoint="chunk.start"\} (\d+)', text, re.M
    )
    assert fired is not None and int(fired.group(1)) >= 3  # the chunks left after the crash


def test_readiness_fails_when_migrations_lag_or_a_database_is_down(
    service: ServiceRunner,
) -> None:
    settings = service.settings()
    migrate.upgrade(settings.app_db)
    command.downgrade(migrate.alembic_config(settings.app_db), "0001")
    assert api_module.readiness_checks(settings) == {
        "system_database": True,
        "app_database": True,
        "migrations_at_head": False,
    }
    down = Settings.from_env(service.env(APP_DATABASE_URL="postgresql://u:pw@127.0.0.1:1/gone"))
    assert api_module.readiness_checks(down)["app_database"] is False
