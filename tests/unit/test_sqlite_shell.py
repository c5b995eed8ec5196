"""The reading-state guide's `sqlite3` line waits for a chunk commit's write lock instead of
answering "database is locked": it runs as written against a file whose lock is held."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest

PAGE = Path(__file__).parents[2] / "docs" / "guides" / "reading-state.md"
BLOCK = re.compile(r"<!-- sqlite-shell:start -->\n```sh\n(.+?)\n```\n<!-- sqlite-shell:end -->")
LOCK_HELD_SEC = 0.5
# Skipped only off CI: under CI=true (where Debian's sqlite3 is installed) a missing shell fails.
IN_CI = os.environ.get("CI", "").lower() == "true"
pytestmark = pytest.mark.skipif(
    shutil.which("sqlite3") is None and not IN_CI, reason="no sqlite3 shell"
)


def _guide_command(database: Path) -> list[str]:
    """The guide's line, its file name swapped for this test's file."""
    match = BLOCK.search(PAGE.read_text())
    assert match, "reading-state.md has no sqlite-shell block"
    argv = shlex.split(match.group(1))
    assert argv[-1] == "dbos_publishers_app.sqlite"
    return [*argv[:-1], str(database)]


def _hold_write_lock(database: Path) -> None:
    """A writer holding the file's exclusive lock for LOCK_HELD_SEC, as a chunk commit does;
    returns once the lock is taken."""
    taken = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN EXCLUSIVE")
        taken.set()
        threading.Event().wait(LOCK_HELD_SEC)
        conn.execute("COMMIT")
        conn.close()

    threading.Thread(target=hold, daemon=True).start()
    assert taken.wait(5)


def _query(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        check=False,  # the control expects a failure
        input="SELECT count(*) FROM t;\n",
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "app.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    return path


def test_the_guides_line_waits_for_a_held_write_lock(database: Path) -> None:
    _hold_write_lock(database)
    result = _query(_guide_command(database))
    assert (result.stdout.strip(), result.stderr) == ("0", "")


def test_without_the_timeout_the_shell_answers_database_is_locked(database: Path) -> None:
    """The control: the same query with no busy timeout fails, so the one above proves it."""
    _hold_write_lock(database)
    result = _query(["sqlite3", str(database)])
    assert "database is locked" in result.stderr
