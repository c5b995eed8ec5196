"""The dashboard's batch list, batch page and cancel action in a real browser (headless Chromium
driven over its DevTools protocol) against the real service with a token: the list filters as
typed, the page shows the running batch, the cancel asks first and then really cancels."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import httpx
import pytest

from tests import browser
from tests.helpers import ServiceRunner

pytestmark = pytest.mark.slow
TOKEN = "batch-page-t0ken"
SLOW_CHUNKS = "chunk.start=delay(300)@every"  # still running while the test clicks
# Set to a folder (docs/) to keep the screenshots the docs show.
SCREENSHOTS = os.environ.get("DASHBOARD_SCREENSHOTS")


def _submit(http: httpx.Client, batch_id: str, count: int) -> None:
    body = {"publisher": "orders", "count": count, "batch_id": batch_id}
    assert http.post("/batches", json=body).status_code == 202


def _started(http: httpx.Client, batch_id: str) -> None:
    deadline = time.monotonic() + 120
    while not http.get(f"/batches/{batch_id}").json()["published"]:
        assert time.monotonic() < deadline, f"batch {batch_id} never started"
        time.sleep(0.2)


def _shot(tab: browser.Driven, path: Path) -> None:
    png = base64.b64decode(tab.send("Page.captureScreenshot", captureBeyondViewport=True)["data"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    path.write_bytes(png)


def _listed(tab: browser.Driven) -> list[str]:
    rows = tab.js(
        "[...document.querySelectorAll('#batch-list tbody tr')].map(r => r.dataset.batch)"
    )
    return list(rows)


def test_the_list_filters_the_page_shows_a_batch_and_cancel_asks_then_cancels(
    sqlite_runner: ServiceRunner, tmp_path: Path
) -> None:
    base = sqlite_runner.enable_http()
    sqlite_runner.declare(chunk_size=100, chunk_concurrency=2)
    sqlite_runner.extra_env["APP_API_TOKEN"] = TOKEN
    sqlite_runner.start(SLOW_CHUNKS)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=base, timeout=30, headers=headers) as http:
        _submit(http, "side-1", 100)
        _submit(http, "dash-1", 6000)
        _started(http, "dash-1")
        with browser.driven(f"{base}/dashboard#token={TOKEN}") as tab:
            tab.until("!!document.querySelector('#batch-list tr[data-batch=\"dash-1\"]')", "dash-1")
            assert _listed(tab) == ["dash-1", "side-1"]
            tab.js(
                "(s => { s.value = 'side'; s.dispatchEvent(new Event('input')); })"
                "(document.getElementById('batch-search'))"
            )
            tab.until("document.querySelectorAll('#batch-list tbody tr').length === 1", "a filter")
            assert _listed(tab) == ["side-1"]
            tab.js(
                "(s => { s.value = ''; s.dispatchEvent(new Event('input')); })"
                "(document.getElementById('batch-search'))"
            )
            tab.until("document.querySelectorAll('#batch-list tbody tr').length === 2", "all")

            tab.click('#batch-list tr[data-batch="dash-1"]')
            summary = tab.until(
                "document.getElementById('page-summary').innerText", "the batch page"
            )
            assert summary.startswith("running: orders → default;"), summary
            assert "of 6000 messages published" in summary
            assert "submitted" in tab.text("#page-history")
            assert "committed" in tab.text("#page-chunks")
            disabled = tab.js(
                "[...document.querySelectorAll('#page-actions button')]"
                ".map(b => [b.dataset.action, b.disabled])"
            )
            assert disabled == [["cancel", False], ["resume", True], ["retry", True]]
            _shot(tab, Path(SCREENSHOTS or tmp_path) / "dashboard-batch-page.png")

            tab.click('#page-actions button[data-action="cancel"]')
            assert tab.js("document.getElementById('page-confirm').hidden") is False
            assert tab.text("#page-confirm-text") == (
                "Cancel batch dash-1? Nothing more of it will be published."
            )
            assert http.get("/batches/dash-1").json()["status"] != "CANCELLED"  # asked only

            tab.click("#page-confirm-yes")
            result = tab.until("document.getElementById('page-result').innerText", "a result")
            assert result.startswith("cancel: done;"), result
            assert "state cancelled" in result
            tab.until(
                "document.getElementById('page-summary').innerText.startsWith('cancelled')",
                "the cancelled batch",
            )
            assert "cancelled" in tab.text("#page-history")

        assert http.get("/batches/dash-1").json()["status"] == "CANCELLED"
        cancelled = http.get("/batches", params={"state": "cancelled"}).json()["batches"]
        assert [b["batch_id"] for b in cancelled] == ["dash-1"]
    assert sqlite_runner.stop() == 0
