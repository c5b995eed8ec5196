"""Postgres faults mid-batch on the lab's own cluster: restarts, outages, dropped connections,
crashes; the running service must finish the work exactly once without a hand restart."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.scenarios.harness import HarnessError

if TYPE_CHECKING:
    from app.scenarios.runner import Lab


def run(lab: Lab) -> None:
    raise HarnessError(f"{lab.scenario.name}: not built yet")
