"""The dashboard and /docs in a real browser (headless Chromium), against the real service: what
a person sees while a batch runs, what they see without the token, and docs with no network."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from dbos_publishers.ops._api import serve_in_thread
from tests import browser
from tests.helpers import ServiceRunner

pytestmark = pytest.mark.slow
TOKEN = "dash-t0ken"
SLOW_CHUNKS = "chunk.start=delay(400)@every"  # the batch is still running when the page loads


def _running_batch(base: str, headers: dict[str, str]) -> dict[str, object]:
    """Submit a batch and wait until part of it, not all, is published."""
    with httpx.Client(base_url=base, timeout=30, headers=headers) as http:
        body = {"publisher": "orders", "count": 6000, "batch_id": "dash-1"}
        assert http.post("/batches", json=body).status_code == 202
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state: dict[str, object] = http.get("/batches/dash-1").json()
            if state["published"]:
                return state
            time.sleep(0.2)
    raise AssertionError(f"batch dash-1 never started: {state}")


@pytest.fixture
def slow_service(sqlite_runner: ServiceRunner) -> Iterator[tuple[ServiceRunner, str]]:
    base = sqlite_runner.enable_http()
    sqlite_runner.declare(chunk_size=100, chunk_concurrency=2)
    yield sqlite_runner, base


def test_the_dashboard_shows_a_running_batch_workers_and_the_invariant(
    slow_service: tuple[ServiceRunner, str],
) -> None:
    service, base = slow_service
    service.start(SLOW_CHUNKS)
    _running_batch(base, {})
    page = browser.dom(f"{base}/dashboard")

    assert browser.element(page, "auth")[0].get("hidden") is not None
    assert "orders" in browser.element(page, "counters")[1]
    _, batches = browser.element(page, "batches")
    assert "dash-1 orders → default · PENDING" in batches, batches
    assert "of 6000 messages" in batches
    _, banner = browser.element(page, "invariant")
    assert banner.startswith("Every counter agrees with the ledger"), banner
    _, workers = browser.element(page, "workers")
    assert f"{service.executor_id()} 1 alive" in workers, workers
    _, timeline = browser.element(page, "timeline-summary")
    assert "workflows; 0 steps replayed" in timeline, timeline
    assert "publisher_chunks" in browser.element(page, "queues")[1]


def test_with_a_token_the_page_asks_for_it_and_shows_no_data_without_it(
    slow_service: tuple[ServiceRunner, str],
) -> None:
    service, base = slow_service
    service.extra_env["APP_API_TOKEN"] = TOKEN
    service.start(SLOW_CHUNKS)
    _running_batch(base, {"Authorization": f"Bearer {TOKEN}"})

    asked = browser.dom(f"{base}/dashboard")
    assert browser.element(asked, "auth")[0].get("hidden") is None
    assert browser.element(asked, "panels")[0].get("hidden") is not None
    assert "dash-1" not in asked and "orders" not in browser.element(asked, "counters")[1]

    # The #fragment never reaches the server; the page keeps it in sessionStorage.
    shown = browser.dom(f"{base}/dashboard#token={TOKEN}")
    assert browser.element(shown, "auth")[0].get("hidden") is not None
    assert "dash-1" in browser.element(shown, "batches")[1]
    assert TOKEN not in service.tail(400)  # never logged


def test_docs_render_with_no_network(slow_service: tuple[ServiceRunner, str]) -> None:
    service, base = slow_service
    service.start()
    page = browser.dom(f"{base}/docs", offline=True)
    assert 'id="operations-batches-submit_batch_batches_post"' in page
    assert 'id="operations-dashboard-dashboard_overview_dashboard_overview_get"' in page
    assert "Submit, list and follow batches" in page  # the group's description


def test_fastapis_own_docs_stay_blank_with_no_network() -> None:
    """The broken variant: FastAPI's default /docs loads Swagger UI from a CDN, so the check above
    would fail on it (and shows the offline flags really cut the network)."""
    server = serve_in_thread(FastAPI(title="cdn"), "127.0.0.1", 0)
    try:
        port = server.servers[0].sockets[0].getsockname()[1]
        page = browser.dom(f"http://127.0.0.1:{port}/docs", offline=True)
    finally:
        server.should_exit = True
    assert "cdn.jsdelivr.net" in page  # the page loaded, its script did not
    assert 'id="operations-' not in page
