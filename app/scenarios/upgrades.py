"""Deploys while work is pending: a crash on version N, the restart on N+1."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.scenarios.harness import HarnessError

if TYPE_CHECKING:
    from app.scenarios.runner import Lab


def run(lab: Lab) -> None:
    raise HarnessError(f"{lab.scenario.name}: not built yet")
