"""Lab variant for `broken/outage-flood`: the service without its outage screen, so every DBOS
thread logs every failed connection of an outage. It shows `pg/outage`'s checks (the outage told
once, no flood) catch a service that floods its log. Never run it for real."""

from __future__ import annotations

import logging
import runpy
import sys
from collections.abc import Callable

from dbos_publishers import _logs as logs


def no_screen(screen: Callable[[logging.LogRecord], bool]) -> None:
    """What `logs.add_filter` would be if the service never screened DBOS's records."""
    del screen


if __name__ == "__main__":
    logs.add_filter = no_screen
    sys.argv = ["app", "serve"]
    runpy.run_module("app", run_name="__main__")  # `python -m app serve`, with the above
