"""Processes the lab starts die with whoever started them: a test run or a lab cut off from
outside (`timeout`, a CI job cancelled, a SIGKILL) must not leave services running that hold
CPU, leases and databases. Linux's parent-death signal does it in the kernel, whatever way the
parent goes."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
# Resolved once in the parent: the child between fork and exec runs as little Python as it can.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def die_with_parent() -> None:
    """A `preexec_fn`: the kernel SIGKILLs this child when the thread that started it exits.
    If the parent is already gone (it died before this ran), exit at once."""
    parent = os.getppid()
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def child_of_this_run() -> None:
    """A `preexec_fn`: die with the parent, and take SIGINT by default whatever the parent does.
    A run started as `cmd &` from a script ignores SIGINT and its children inherit that, so a
    test's Ctrl-C (SIGINT) would go unheard by the CLI or service it starts."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    die_with_parent()
