"""A suite started with SIGINT ignored (`cmd &` from a script) still interrupts what it starts:
the harness's children take SIGINT by default, as a Ctrl-C test needs; a child started
without it inherits the ignore (the broken variant)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from lab.scenarios.reaping import child_of_this_run
from tests.helpers import ROOT

SIGINT_BIT = 1 << (signal.SIGINT - 1)
# Python keeps an inherited SIG_IGN for SIGINT and replaces only SIG_DFL with its handler.
SLEEPER = [sys.executable, "-c", "import time; time.sleep(30)"]


@contextmanager
def sigint_ignored() -> Iterator[None]:
    """This process ignores SIGINT meanwhile, as one started by `cmd &` does."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _ignores_sigint(preexec: Callable[[], None] | None) -> bool:
    """Whether a child started from a SIGINT-ignoring process ignores SIGINT (per /proc)."""
    with sigint_ignored():
        child = subprocess.Popen(SLEEPER, preexec_fn=preexec)  # noqa: PLW1509
    try:
        status = Path(f"/proc/{child.pid}/status").read_text()
    finally:
        child.kill()
        child.wait()
    (mask,) = (line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:"))
    return bool(int(mask, 16) & SIGINT_BIT)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
@pytest.mark.parametrize(("preexec", "ignores"), [(child_of_this_run, False), (None, True)])
def test_the_harness_child_takes_sigint_by_default(
    preexec: Callable[[], None] | None, ignores: bool
) -> None:
    assert _ignores_sigint(preexec) is ignores


@pytest.mark.slow
def test_a_ctrl_c_test_passes_in_a_run_started_with_sigint_ignored(tmp_path: Path) -> None:
    """The Ctrl-C of `publish --wait`, run by a pytest that ignores SIGINT from its start."""
    command = [
        sys.executable, "-m", "pytest", "tests/integration/test_cli_process.py", "-k", "ctrl_c",
        "-n", "0", "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'pt'}", "-q",
    ]  # fmt: skip
    with sigint_ignored():  # the pytest inherits the ignore, as from `cmd &`
        run = subprocess.run(
            command,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "1 passed" in run.stdout
