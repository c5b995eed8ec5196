"""The chaos schedule: SIGKILLs at seeded random points of a large run; the same seed gives the
same schedule."""

from __future__ import annotations

import random

from lab.scenarios.catalog import Fault

# Each chunk waits a little, so a run of ten thousand messages lasts long enough to be killed
# twenty times part-way.
PACE = "chunk.start=delay(20)@every"
FIRST_KILL_AT, LAST_KILL_AT = 0.03, 0.9  # fractions of the messages in the ledger
MAX_KILL_DELAY_SEC = 0.5


def kill_schedule(kills: int, seed: int) -> tuple[Fault, ...]:
    """`kills` runs, each SIGKILLed once the ledger holds a seeded fraction of the messages and a
    seeded delay has passed; when the fraction is reached before the restart is even ready, the
    kill lands during start-up and recovery."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible schedule, not a secret
    points = sorted(rng.uniform(FIRST_KILL_AT, LAST_KILL_AT) for _ in range(kills))
    return tuple(
        Fault(
            PACE,
            "killed",
            kill_at=round(point, 4),
            kill_delay_sec=round(rng.uniform(0, MAX_KILL_DELAY_SEC), 3),
        )
        for point in points
    )
