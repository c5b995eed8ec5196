"""`fleet/chaos` (issue 20): seeded SIGKILLs, freezes and hangs of 3 workers on Postgres, judged
by SQL and by the others' progress during each stuck worker. Its schedule is checked here; the
run itself is by hand, at 100,000 messages (docs/lab/crash-lab.md): at a size CI can afford, on a
machine loaded by the rest of the suite, a late hang could find the work already done ("the hang
failpoint never fired") — a lab timing miss, not a verdict. Each fault it mixes has its own
scenario in CI (`fleet/freeze`, `fleet/hang`, `takeover/chaos`), with its broken variants."""

from __future__ import annotations

from collections import Counter

from lab.scenarios import fleet_chaos


def test_the_same_seed_gives_the_same_schedule_with_every_kind() -> None:
    """Reproducible, and each kind of fault drawn in equal shares."""
    assert fleet_chaos.schedule(6, 7) == fleet_chaos.schedule(6, 7)
    assert fleet_chaos.schedule(6, 7) != fleet_chaos.schedule(6, 8)
    kinds = Counter(event.kind for event in fleet_chaos.schedule(6, 7))
    assert kinds == {"kill": 2, "freeze": 2, "hang": 2}
