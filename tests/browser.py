"""Headless Chromium (Debian's `chromium`) for the tests that look at a page as a person would:
the DOM after the page's scripts ran, a screenshot, or a page driven click by click over the
DevTools protocol (`Driven`)."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket as socket_module
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import websocket

BUDGET_MS = 8000  # virtual time: the page's 2 s polls run several times, however loaded the box
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# No host but this machine's loopback resolves: a page that needs a CDN finds none.
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


def chromium() -> str:
    """The browser's path; skip without it, except under CI=true (.ci/run installs it)."""
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true requires chromium (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return found


def run(url: str, *args: str, offline: bool = False, budget_ms: int = BUDGET_MS) -> str:
    """Load `url` in a fresh profile, let its scripts run for `budget_ms` of virtual time, and
    return what Chromium printed on stdout."""
    # Its helper processes may still be writing the profile as it goes: cleanup errors are no
    # verdict on the page.
    with tempfile.TemporaryDirectory(prefix="chromium-", ignore_cleanup_errors=True) as profile:
        done = subprocess.run(
            [
                chromium(),
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--virtual-time-budget={budget_ms}",
                *([OFFLINE] if offline else []),
                *args,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=300,  # a loaded 2-core box
            check=False,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def dom(url: str, *, offline: bool = False) -> str:
    return run(url, "--dump-dom", offline=offline)


def screenshot(url: str, path: Path, size: str = "1280,1400") -> None:
    run(url, f"--screenshot={path}", f"--window-size={size}")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class _Element(HTMLParser):
    """Text and attributes of the element with one id, from a DOM dump."""

    def __init__(self, element_id: str) -> None:
        super().__init__()
        self.element_id, self.depth, self.text = element_id, 0, ""
        self.attrs: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in VOID:
            return
        if self.depth:
            self.depth += 1
        elif dict(attrs).get("id") == self.element_id and self.attrs is None:
            self.attrs, self.depth = dict(attrs), 1

    def handle_endtag(self, tag: str) -> None:
        if self.depth:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.text += f"{data} "


def element(page: str, element_id: str) -> tuple[dict[str, str | None], str]:
    """The attributes and the text of the element with `element_id`; fails if there is none."""
    parser = _Element(element_id)
    parser.feed(page)
    assert parser.attrs is not None, f"no element #{element_id} on the page"
    return parser.attrs, " ".join(parser.text.split())


WAIT_SEC = 60.0


class Driven:
    """One page of a headless Chromium, driven over the DevTools protocol: the test evaluates
    JavaScript in it (clicks, reads) as a person's actions would, and waits on conditions."""

    def __init__(self, socket: websocket.WebSocket) -> None:
        self.socket, self.ids = socket, itertools.count(1)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self.ids)
        self.socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:  # events arrive between the answers; only the answer is wanted
            answer: dict[str, Any] = json.loads(self.socket.recv())
            if answer.get("id") == message_id:
                assert "error" not in answer, answer
                result: dict[str, Any] = answer.get("result", {})
                return result

    def js(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited if it is a promise)."""
        result = self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def until(self, expression: str, what: str) -> Any:
        """Wait until the expression is truthy in the page; its value."""
        deadline = time.monotonic() + WAIT_SEC
        while not (value := self.js(expression)):
            if time.monotonic() > deadline:
                raise AssertionError(f"the page never showed {what}")
            time.sleep(0.1)
        return value

    def click(self, selector: str) -> None:
        node = f"document.querySelector({json.dumps(selector)})"
        found = self.js(f"(n => n ? (n.click(), true) : false)({node})")
        assert found, f"nothing to click at {selector}"

    def text(self, selector: str) -> str:
        value = self.js(f"document.querySelector({json.dumps(selector)})?.innerText ?? null")
        assert value is not None, f"no element {selector} on the page"
        return str(value)


@contextmanager
def driven(url: str) -> Iterator[Driven]:
    """A fresh headless Chromium on `url` (real time, not virtual), closed afterwards."""
    port = _free_port()
    # Its helper processes may still be writing the profile as it goes: cleanup errors are no
    # verdict on the page.
    with tempfile.TemporaryDirectory(prefix="chromium-", ignore_cleanup_errors=True) as profile:
        command = [chromium(), *FLAGS, f"--user-data-dir={profile}"]
        process = subprocess.Popen(
            [*command, f"--remote-debugging-port={port}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            socket = websocket.create_connection(_page_socket(port, process), timeout=60)
            try:
                tab = Driven(socket)
                tab.send("Page.navigate", url=url)
                tab.until("document.readyState === 'complete'", "a loaded page")
                yield tab
            finally:
                socket.close()
        finally:
            process.kill()
            process.wait(timeout=30)


def _free_port() -> int:
    with socket_module.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _page_socket(port: int, process: subprocess.Popen[bytes]) -> str:
    """The DevTools socket of the browser's first page, once it answers."""
    deadline = time.monotonic() + WAIT_SEC
    while time.monotonic() < deadline and process.poll() is None:
        try:
            targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
        except httpx.HTTPError:
            time.sleep(0.1)
            continue
        pages = [t for t in targets if t["type"] == "page"]
        if pages:
            return str(pages[0]["webSocketDebuggerUrl"])
    raise AssertionError(f"chromium never answered on DevTools port {port}")
