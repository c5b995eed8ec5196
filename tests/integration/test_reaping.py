"""A service the lab or a test started dies with whoever started it, however that one went
(here: SIGKILL, which no cleanup code survives); the broken variant, a child started without
the parent-death signal, is left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT

PARENT = textwrap.dedent(
    """
    import subprocess, sys, time
    from pathlib import Path
    from lab.scenarios.harness import Databases, ServiceHarness
    from lab.scenarios.reaping import die_with_parent

    workdir = Path(sys.argv[1])
    if sys.argv[2] == "harness":
        databases = Databases(
            backend="sqlite",
            system_url=f"sqlite:///{workdir / 'system.sqlite'}",
            app_url=f"sqlite:///{workdir / 'app.sqlite'}",
        )
        service = ServiceHarness(databases=databases, workdir=workdir)
        service.start(wait_ready=False)
        child = service.process
    else:  # the broken variant: no parent-death signal
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    print(child.pid, flush=True)
    time.sleep(300)
    """
)


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("how", ["harness", "broken-variant"])
def test_a_service_dies_with_the_process_that_started_it(tmp_path: Path, how: str) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path), how],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the test kills the parent alone, never its group
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    gone = _gone_within(child, 10.0)
    if not gone:
        os.kill(child, signal.SIGKILL)
    assert gone == (how == "harness")
