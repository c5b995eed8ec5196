"""Test helpers: the scenario harness (the real service in a subprocess, the real CLI, reads of
both databases), under the names the tests use."""

from __future__ import annotations

from app.config import PROJECT_ROOT
from app.scenarios.harness import Databases, ScenarioBackend, ServiceHarness

Backend = ScenarioBackend
ROOT = PROJECT_ROOT
ServiceRunner = ServiceHarness

__all__ = ["ROOT", "Backend", "Databases", "ServiceRunner"]
