"""`fleet/chaos` (issue 20): the seeded SIGKILLs of `takeover/chaos` mixed with the stuck workers
of `fleet/*`: freezes (SIGSTOP past the lease, then SIGCONT: the worker must find its lease lost
and exit 3) and hangs (a worker restarted with a chunk that hangs before its commit, SIGKILLed a
few TTLs later). The same seed gives the same schedule. Judged as the others: by SQL (nothing
missing, nothing twice, counters exact, nothing stranded), each gone worker taken over once, and
for each freeze or hang the others' progress and the stuck transactions' end (stuck.py)."""

from __future__ import annotations

import random
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from lab.scenarios import stuck, takeover
from lab.scenarios.harness import ServiceHarness

if TYPE_CHECKING:
    from lab.scenarios.lab import Lab

Kind = Literal["kill", "freeze", "hang"]
KINDS: tuple[Kind, ...] = ("kill", "freeze", "hang")
FIRST_AT, LAST_AT = 0.05, 0.6  # fractions of the messages in the ledger when faults land
RESTART_CHANCE = 0.5  # a killed worker is started again this often (always if few are left)
MIN_ALIVE = 2  # a freeze or a hang needs another live worker to take over and commit on
HOLD_TTLS = 4.0  # a freeze lasts this many lease TTLs
HANG_TTLS = 3.0  # a hung worker is SIGKILLed this many lease TTLs after its hang
HANG_AT = 2  # the restarted worker's nth chunk commit hangs
# The chunks' pace spreads the run over about this long whatever the message count, so that
# every fault (a freeze holds 12 s, a hang about 15 s with its restart) lands while work runs.
PACED_SEC = 90.0
SLOTS = 6  # chunks at once: 3 workers x chunk_concurrency 2


@dataclass(frozen=True)
class Event:
    """One fault of the schedule; `pick` chooses among the workers alive when it lands."""

    kind: Kind
    at: float
    pick: int
    restart: bool


def schedule(faults: int, seed: int) -> list[Event]:
    """`faults` faults, kinds in equal shares (shuffled), at seeded points of the ledger."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible schedule, not a secret
    kinds = [KINDS[n % len(KINDS)] for n in range(faults)]
    rng.shuffle(kinds)
    points = sorted(rng.uniform(FIRST_AT, LAST_AT) for _ in range(faults))
    return [
        Event(kind, round(at, 4), rng.randrange(1000), rng.random() < RESTART_CHANCE)
        for kind, at in zip(kinds, points, strict=True)
    ]


def pace(lab: Lab) -> str:
    """A delay before each chunk such that the run lasts about PACED_SEC (see PACED_SEC)."""
    chunks = max(1, lab.report.messages // lab.scenario.chunk_size)
    delay_ms = max(20, int(PACED_SEC * 1000 * SLOTS / chunks))
    return f"chunk.start=delay({delay_ms})@every"


def run(lab: Lab) -> None:
    """Submit, start every worker, play the schedule, let the workers finish, judge."""
    lab.submit()
    for worker in lab.crew:
        worker.start(pace(lab))
    started = time.time()
    events = schedule(lab.options.kills or lab.scenario.chaos_kills, lab.options.seed)
    lab.report.chaos_schedule = [e.__dict__ for e in events]
    for number, event in enumerate(events, start=1):
        _play(lab, event, number, len(events))
    lab.wait_done()
    lab.collect(started)
    lab.report.first_resumed_step = lab.report.restart_seconds = None  # no restart of all
    takeover.judge_takeovers(lab)
    stuck.judge_progress(lab)
    stuck.judge_sessions(lab)
    for worker in lab.crew:
        if worker.running():
            worker.stop()


def _play(lab: Lab, event: Event, number: int, total: int) -> None:
    takeover.await_rows(lab, event.at)
    alive = [w for w in lab.crew if w.running()]
    victim = alive[event.pick % len(alive)]
    lab.progress.update(f"{lab.scenario.name}: fault {number}/{total}: {event.kind}")
    if event.kind == "kill":
        _kill(lab, victim, restart=event.restart or len(alive) <= MIN_ALIVE)
    elif event.kind == "freeze":
        _freeze(lab, victim)
    else:
        _hang(lab, victim)


def _kill(lab: Lab, victim: ServiceHarness, restart: bool) -> None:
    """SIGKILL; restarted by the schedule, or when too few would be left for the stuck faults."""
    takeover.kill(lab, victim)
    if restart:
        victim.start(pace(lab))


def _freeze(lab: Lab, victim: ServiceHarness) -> None:
    """SIGSTOP past the lease, SIGCONT: it must exit 3 (lease lost); then it starts again."""
    stuck.signal_all(victim, signal.SIGSTOP)
    fault = stuck.began(lab, "freeze (SIGSTOP)", victim, inside=False)
    stuck.sleep_until(fault["started_at"] + HOLD_TTLS * stuck.TTL_SEC)
    stuck.thaw(lab, fault, victim)
    victim.start(pace(lab))


def _hang(lab: Lab, victim: ServiceHarness) -> None:
    """Restarted with a chunk commit that hangs (its lease lives on), SIGKILLed a few TTLs into
    the hang and started again without it; the others take its work over."""
    takeover.kill(lab, victim)
    victim.start(f"{pace(lab)};chunk.before_commit=hang@{HANG_AT}")
    began = stuck.await_hang(victim)
    fault = stuck.began(lab, "hang before a chunk commit", victim, inside=True, at=began)
    stuck.sleep_until(began + HANG_TTLS * stuck.TTL_SEC)
    fault["lasted_sec"] = round(time.time() - began, 2)
    takeover.kill(lab, victim)
    fault["ended"] = "SIGKILL by the lab"
    victim.start(pace(lab))
