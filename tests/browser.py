"""Headless Chromium (Debian's `chromium`) for the tests that look at a page as a person would:
the DOM after the page's scripts ran, or a screenshot."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

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
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
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
