"""POST /batches/{id}/cancel | resume | retry over real loopback HTTP in-process, on SQLite, with
no worker running (the batch waits ENQUEUED): the token rules, a 404 for an unknown batch, a 409
for a wrong state, and a cancel before the batch was ever planned."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers._config import Settings
from dbos_publishers.store import _batch_records as batch_records
from dbos_publishers.store._database import short_lived_engine
from tests.inprocess.conftest import Api, served_api

TOKEN = "lifecycle-test-token"
PUBLISHERS = '[[publishers]]\nname = "orders"\nchunk_size = 25\n'


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with served_api(tmp_path, PUBLISHERS, token=TOKEN) as served:
        yield served


def _status(settings: Settings, workflow_id: str) -> str:
    with dbos_gateway.client(settings.system_db) as client:
        (found,) = dbos_gateway.workflows(client, [workflow_id])
    return found.status


def test_cancel_resume_and_retry_answer_per_route(api: Api) -> None:
    http, settings = api
    submitted = http.post("/batches", json={"publisher": "orders", "count": 100, "batch_id": "q"})
    assert submitted.status_code == 202, submitted.text
    assert http.post("/batches/q/cancel", headers={"Authorization": "Bearer no"}).status_code == 401
    assert _status(settings, "batch-q") == "ENQUEUED"  # the refused request did nothing

    cancelled = http.post("/batches/q/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json() == {
        "batch_id": "q",
        "action": "cancel",
        "state": "cancelled",
        "workflows": ["batch-q"],
        "published": 0,
    }
    assert _status(settings, "batch-q") == "CANCELLED"
    with short_lived_engine(settings.app_db) as engine, engine.connect() as conn:
        row = batch_records.batch_progress(conn, "q")  # never planned: recorded by the cancel
    assert row is not None and (row.state, row.messages, row.chunks) == ("cancelled", 100, 4)

    retried = http.post("/batches/q/retry")
    assert (retried.status_code, "resume it first" in retried.json()["detail"]) == (409, True)
    resumed = http.post("/batches/q/resume")
    assert (resumed.status_code, resumed.json()["state"]) == (200, "active")
    assert _status(settings, "batch-q") == "ENQUEUED"
    again = http.post("/batches/q/resume")
    assert (again.status_code, "is not cancelled" in again.json()["detail"]) == (409, True)
    assert http.post("/batches/nope/cancel").status_code == 404
    assert http.post("/batches/bad%20id/cancel").status_code == 422
