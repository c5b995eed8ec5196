"""The batch list and the batch page, on SQLite in this process: `batches` and `inspect` through
the real CLI after a batch was cancelled mid-run and resumed (its history says so, its chunks
count as the ledger holds them), and GET /batches over loopback HTTP with filters and cursor."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers import _lifecycle as lifecycle
from dbos_publishers._config import Settings
from dbos_publishers._ids import batch_workflow_id
from dbos_publishers.ops import _history as history
from dbos_publishers.ops import _status as status
from tests.helpers import CliRun, InProcessCli, published, wait_until
from tests.inprocess.conftest import InProcessService, StartService, served_api

PUBLISHERS = """
[[publishers]]
name = "orders"
class = "dbos_publishers.contrib.events:EventPublisher"
chunk_size = 10
"""
PACED = "chunk.start=delay(100)@every"  # a cancel lands mid-batch whatever the machine's speed


def _cli(
    service: InProcessService, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> Callable[..., CliRun]:
    settings = service.settings
    env = {
        "APP_PUBLISHERS_FILE": str(tmp_path / "publishers.toml"),
        "DBOS_SYSTEM_DATABASE_URL": settings.system_db.raw,
        "APP_DATABASE_URL": settings.app_db.raw,
    }
    return InProcessCli(capture=capfd, cwd=tmp_path, env=env)


def _metrics(settings: Settings) -> dict[tuple[str, tuple[str, ...]], float]:
    """The batch metrics as Prometheus would scrape them: (sample name, label values) -> value."""
    found = {}
    for family in status.StateCollector(settings).collect():
        for sample in family.samples:
            if sample.name.startswith("publisher_batch"):
                labels = tuple(v for k, v in sample.labels.items() if k != "le")
                if "le" not in sample.labels:
                    found[(sample.name, labels)] = sample.value
    return found


def test_inspect_opens_with_the_summary_and_history_of_a_cancelled_then_resumed_batch(
    start_service: StartService, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    service = start_service(PUBLISHERS, failpoint_spec=PACED)
    cli = _cli(service, tmp_path, capfd)
    service.submit("orders", 200, "big")
    wait_until(lambda: published(service.settings.app_db, "big") >= 30, "30 messages published")
    lifecycle.act(service.settings, "cancel", "big")

    # While the service runs in this process its threads share stdout: read `inspect` directly,
    # and through the CLI once the service has stopped.
    described = history.describe(service.settings, "big")
    cancelled = history.to_json(described, history.Detail())
    summary, at_cancel = cancelled["summary"], published(service.settings.app_db, "big")
    assert cancelled["batch"]["state"] == "cancelled"
    assert summary["chunks_committed"] * 10 == at_cancel  # ledger chunks = committed chunks
    assert summary["failed_chunks"] == 0 and summary["chunks_cancelled"] > 0
    assert (
        summary["chunks_committed"] + summary["chunks_cancelled"] + summary["chunks_pending"]
        == summary["chunks"]
    )

    lifecycle.act(service.settings, "resume", "big")
    with dbos_gateway.client(service.settings.system_db) as client:
        dbos_gateway.wait_result(client, batch_workflow_id("big"), poll_sec=0.05)
    service.stop()
    text = cli("inspect", "big")
    assert text.returncode == 0, text.stderr
    first = text.stdout.splitlines()[0]
    assert first == "Batch big: succeeded, publisher orders, topic default"
    assert "200 of 200 messages published, 0 failed" in text.stdout
    lines = text.stdout.split("History\n")[1].splitlines()[2:]  # after the header and its rule
    events = [line.split()[1] for line in lines]
    assert events == ["submitted", "started", "cancelled", "resumed", "finished"], text.stdout

    page = json.loads(cli("inspect", "big", "--json").stdout)
    assert [e["event"] for e in page["history"]] == events
    assert page["summary"]["start"] and page["summary"]["end"]
    assert page["summary"]["duration_sec"] > 0

    metrics = _metrics(service.settings)
    assert metrics[("publisher_batches", ("orders", "succeeded"))] == 1
    assert metrics[("publisher_batches", ("orders", "cancelled"))] == 0
    for event in events:
        assert metrics[("publisher_batch_events_total", ("orders", event))] == 1, event
    assert metrics[("publisher_batch_duration_seconds_count", ("orders",))] == 1
    assert metrics[("publisher_batch_queue_wait_seconds_count", ("orders",))] == 1
    duration = metrics[("publisher_batch_duration_seconds_sum", ("orders",))]
    assert duration == pytest.approx(page["summary"]["duration_sec"], abs=0.01)

    listed = cli("batches", "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)["batches"]
    assert (row["batch_id"], row["state"], row["published"], row["failed"]) == (
        "big",
        "succeeded",
        200,
        0,
    )
    assert row["msg_per_sec"] > 0 and row["duration_sec"] > 0
    table = cli("batches", "--state", "succeeded")
    assert "big" in table.stdout and "succeeded" in table.stdout
    assert cli("batches", "--state", "running").stdout.strip() == "no batches match"
    bad = cli("batches", "--since", "yesterday")
    assert (bad.returncode, bad.stdout) == (2, "")
    assert bad.stderr.strip() == (
        "error: since 'yesterday' is neither a duration (30m, 2h, 7d) nor an ISO 8601 time"
    )


def test_get_batches_lists_filters_and_pages_by_cursor(tmp_path: Path) -> None:
    publishers = PUBLISHERS + '\n[[publishers]]\nname = "billing"\nchunk_size = 5\n'
    with served_api(tmp_path, publishers) as (http, _settings):
        for i, publisher in enumerate(["orders", "billing", "orders"]):
            body = {"publisher": publisher, "count": 20, "batch_id": f"q{i}", "topic": "t"}
            assert http.post("/batches", json=body).status_code == 202
        everything = http.get("/batches").json()
        orders = http.get("/batches", params={"publisher": "orders"}).json()
        first = http.get("/batches", params={"limit": 2}).json()
        rest = http.get("/batches", params={"limit": 2, "after": first["next"]}).json()
        running = http.get("/batches", params={"state": "running"}).json()
        bad_cursor = http.get("/batches", params={"after": "nope"})
        bad_state = http.get("/batches", params={"state": "done"})
    assert [b["batch_id"] for b in everything["batches"]] == ["q2", "q1", "q0"]
    assert {b["state"] for b in everything["batches"]} == {"queued"}
    assert everything["next"] is None
    assert [b["batch_id"] for b in orders["batches"]] == ["q2", "q0"]
    assert [b["batch_id"] for b in first["batches"]] == ["q2", "q1"]
    assert ([b["batch_id"] for b in rest["batches"]], rest["next"]) == (["q0"], None)
    assert running["batches"] == []
    assert bad_cursor.status_code == 404
    assert bad_cursor.json()["detail"] == "cursor 'nope' names no batch (pass the `next` of a page)"
    assert bad_state.status_code == 422
