"""The CLI as a real process: Ctrl-C during `publish --wait` and a closed output pipe end in at
most one line and the shell's exit code, never a traceback; `--help` imports none of the heavy
parts; `doctor` is clean beside a running service."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys

import pytest

from lab.scenarios.reaping import child_of_this_run
from tests.helpers import ServiceRunner

QUEUED = "batch held queued (workflow batch-held)\n"


def _spawn(runner: ServiceRunner, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "app", *args],
        cwd=runner.workdir,
        env=runner.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=child_of_this_run,  # noqa: PLW1509 - SIGINT default, for the one sent below
        text=True,
    )


@pytest.mark.slow
def test_ctrl_c_during_publish_wait_is_one_line_and_exit_130(sqlite_runner: ServiceRunner) -> None:
    waiter = _spawn(
        sqlite_runner, "publish", "orders", "--count", "5", "--batch-id", "held", "--wait"
    )
    assert waiter.stderr is not None
    # Interrupt once it waits (no service runs, so it would wait for ever): the id came first.
    first = waiter.stderr.readline()
    while first.startswith("{"):  # a log record
        first = waiter.stderr.readline()
    assert first == QUEUED, first + waiter.communicate(timeout=60)[1]
    waiter.send_signal(signal.SIGINT)
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 130, err
    assert "Traceback" not in err and out == ""
    lines = [line for line in err.splitlines() if not line.startswith("{")]
    assert lines == [
        "interrupted: stopped waiting; batch held goes on durably (follow it again: python -m app "
        "publish orders --count 5 --topic default --batch-id held --wait)"
    ]
    assert sqlite_runner.active_workflows()  # the batch itself is still queued, durably


@pytest.mark.slow
def test_a_closed_pipe_ends_quietly_with_exit_141(sqlite_runner: ServiceRunner) -> None:
    """`status --watch | head -1`: head leaves after the first line, the next frame meets a
    closed pipe."""
    sqlite_runner.start()
    bash = shutil.which("bash")
    assert bash is not None
    watch = f"'{sys.executable}' -m app status --watch --interval 0.1"
    pipeline = f"{watch} | head -1; exit ${{PIPESTATUS[0]}}"
    done = subprocess.run(
        [bash, "-c", pipeline],
        cwd=sqlite_runner.workdir,
        env=sqlite_runner.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 141, done.stderr
    assert "every 0.1 s" in done.stdout and done.stdout.count("\n") == 1
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr


@pytest.mark.slow
def test_help_imports_none_of_the_heavy_parts() -> None:
    probe = (
        "import sys\n"
        "from dbos_publishers.ops import _cli as cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('dbos', 'sqlalchemy', 'fastapi', 'structlog',"
        " 'dbos_publishers._runtime') if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert "HEAVY []" in done.stderr, done.stderr


@pytest.mark.slow
def test_doctor_beside_a_running_service_is_all_ok(sqlite_runner: ServiceRunner) -> None:
    sqlite_runner.start()
    done = sqlite_runner.cli("doctor", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    names = [c["name"] for c in report["checks"]]
    assert "queue workers" in names and "migrations" in names


@pytest.mark.slow
def test_a_failpoint_declared_by_a_lazily_imported_module_is_known(
    sqlite_runner: ServiceRunner,
) -> None:
    """_lifecycle, imported by the commands only, declares cancel.after_state: a spec naming it
    parses in a fresh process (in-process tests cannot see this: the module is loaded)."""
    done = sqlite_runner.cli("workers", APP_FAILPOINTS="cancel.after_state=raise")
    assert "unknown failpoint" not in done.stderr, done.stderr
    # It got as far as the database: none was ever started here (one line, no traceback).
    assert done.returncode == 2 and "has no application tables yet" in done.stderr, done.stderr
