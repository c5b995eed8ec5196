"""A page on another origin, opened in a real browser (headless Chromium), cannot cancel a batch
through the API on loopback, with no token (the loopback default): the request the page can send
without a preflight (`fetch(..., {method: 'POST', mode: 'no-cors'})`) is refused. Without the
protection (the broken variant), the same page does cancel it."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers._config import Settings
from dbos_publishers.ops import _api
from tests import browser
from tests.inprocess.conftest import served_api

pytestmark = pytest.mark.slow
PUBLISHERS = '[[publishers]]\nname = "orders"\nchunk_size = 25\n'
PAGE = """<!doctype html><html><body><p id="sent">no</p><script>
fetch("{api}/batches/q/cancel", {{method: "POST", mode: "no-cors"}})
  .then(() => {{ document.getElementById("sent").textContent = "yes"; }},
        () => {{ document.getElementById("sent").textContent = "failed"; }});
</script></body></html>"""


class _PassThrough:
    """The broken variant: no browser protection at all."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


@pytest.fixture
def other_origin(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A web server on another port of this machine: another origin, as another site is."""
    folder = tmp_path / "evil"
    folder.mkdir()

    def handler(*args: object, **kwargs: object) -> http.server.SimpleHTTPRequestHandler:
        return http.server.SimpleHTTPRequestHandler(*args, directory=str(folder), **kwargs)  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def _status(settings: Settings) -> str:
    with dbos_gateway.client(settings.system_db) as client:
        (found,) = dbos_gateway.workflows(client, ["batch-q"])
    return found.status


@pytest.mark.parametrize("protected", [True, False], ids=["protected", "broken-variant"])
def test_a_page_on_another_origin_cannot_cancel_a_batch(
    tmp_path: Path,
    other_origin: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
    protected: bool,
) -> None:
    if not protected:
        monkeypatch.setattr(_api, "BrowserSafety", _PassThrough)
    folder, origin = other_origin
    with served_api(tmp_path, PUBLISHERS) as (http, settings):
        body = {"publisher": "orders", "count": 50, "batch_id": "q"}
        assert http.post("/batches", json=body).status_code == 202
        (folder / "page.html").write_text(PAGE.format(api=str(http.base_url).rstrip("/")))
        page = browser.dom(f"{origin}/page.html")
        _, sent = browser.element(page, "sent")
        assert sent == "yes"  # the browser sent it (a no-cors answer is opaque either way)
        assert _status(settings) == ("ENQUEUED" if protected else "CANCELLED")
