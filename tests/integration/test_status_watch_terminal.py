"""`status --watch` on a terminal (a real pseudo-terminal, the real CLI in a subprocess, SQLite):
each frame is redrawn in place by rich.live, never by clearing the screen (which flickers)."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dbos_publishers import _migrate as migrate
from lab.scenarios.reaping import child_of_this_run
from tests.helpers import ServiceRunner

CLEAR_SCREEN = b"\x1b[2J"
ERASE_LINE = b"\x1b[2K"  # how rich.live takes the previous frame back
DEADLINE_SEC = 120


def _read_until(fd: int, frames: int) -> bytes:
    seen = b""
    deadline = time.monotonic() + DEADLINE_SEC
    while seen.count(b"Ledger rows:") < frames and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:  # the other end closed: it exited
                break
    return seen


@pytest.mark.slow
def test_watch_redraws_in_place_on_a_terminal(sqlite_runner: ServiceRunner, tmp_path: Path) -> None:
    migrate.upgrade_all(sqlite_runner.settings())
    controller, terminal = pty.openpty()
    watcher = subprocess.Popen(
        [sys.executable, "-m", "app", "status", "--watch", "--interval", "0.2"],
        cwd=tmp_path,
        env={**sqlite_runner.env(), "TERM": "xterm", "COLUMNS": "120", "LINES": "50"},
        stdin=terminal,
        stdout=terminal,
        stderr=subprocess.PIPE,
        preexec_fn=child_of_this_run,  # noqa: PLW1509 - SIGINT default, for the one sent below
    )
    os.close(terminal)
    try:
        shown = _read_until(controller, frames=3)
        watcher.send_signal(signal.SIGINT)
        _, err = watcher.communicate(timeout=30)
    finally:
        os.close(controller)
    assert shown.count(b"Ledger rows:") >= 3, (shown[-2000:], err)
    assert ERASE_LINE in shown
    assert CLEAR_SCREEN not in shown
    assert watcher.returncode == 0, err
