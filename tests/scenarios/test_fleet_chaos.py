"""`fleet/chaos` (issue 20): seeded SIGKILLs, freezes and hangs of 3 workers on Postgres, judged
by SQL and by the others' progress during each stuck worker; small here, 100,000 messages by
hand (docs/lab/crash-lab.md)."""

from __future__ import annotations

from collections import Counter

import pytest

from lab.scenarios import fleet_chaos
from tests.helpers import Backend
from tests.scenarios.conftest import TEST_TIMEOUT_SEC, run_scenario

MESSAGES = "6000"
SEED = "7"


def test_the_same_seed_gives_the_same_schedule_with_every_kind() -> None:
    """Reproducible, and each kind of fault drawn in equal shares."""
    assert fleet_chaos.schedule(6, 7) == fleet_chaos.schedule(6, 7)
    assert fleet_chaos.schedule(6, 7) != fleet_chaos.schedule(6, 8)
    kinds = Counter(event.kind for event in fleet_chaos.schedule(6, 7))
    assert kinds == {"kill": 2, "freeze": 2, "hang": 2}


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(TEST_TIMEOUT_SEC)
@pytest.mark.parametrize("backend", ["postgres"])
def test_fleet_chaos_passes(scenario_backend: Backend) -> None:
    """Nothing missing, nothing twice, counters exact, nothing stranded; every freeze and hang
    happened, and the others committed on during each."""
    args = ("--messages", MESSAGES, "--seed", SEED)
    code, (report,) = run_scenario(scenario_backend, "fleet/chaos", *args)
    assert (code, report["ok"], report["violations"]) == (0, True, [])
    assert report["ledger_rows"] == int(MESSAGES) and report["stranded"] == []
    assert report["steps_reexecuted"] == []
    stuck = Counter(f["fault"].split(" ")[0] for f in report["stuck_faults"])
    assert stuck == {"freeze": 2, "hang": 2}
    assert all(f["survivors_resumed_sec"] is not None for f in report["stuck_faults"])
