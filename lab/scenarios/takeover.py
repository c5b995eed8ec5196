"""Multi-worker scenarios: several workers share one Postgres database while the lab kills,
pauses or restarts some of them; the others must finish every batch exactly once, and each gone
worker must be taken over by exactly one survivor."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from functools import partial
from typing import TYPE_CHECKING, Any, assert_never

from dbos import WorkflowStatus

from dbos_publishers.ops import _history as history
from dbos_publishers.store import _leases as leases
from dbos_publishers.store._database import short_lived_engine
from lab.scenarios.chaos import PACE
from lab.scenarios.harness import HarnessError, ServiceHarness, StepKey

if TYPE_CHECKING:
    from lab.scenarios.lab import Lab

EXIT_LEASE_LOST = 3
FAULT_AT = 0.3  # fraction of the messages in the ledger when the fault lands
WAIT_SEC = 120.0
TAKEOVER_GRACE_SEC = 10.0  # the lab's 3 s lease, sweeps every 0.5 s, and a loaded machine
RESTART_CHANCE = 0.5  # chaos: how often a killed worker is started again


def run(lab: Lab) -> None:
    """Submit, start every worker, apply the scenario's fault, let the survivors finish, judge."""
    lab.submit()
    for worker in lab.crew:
        _start(lab, worker)
    started = time.time()
    kind = lab.scenario.takeover or ("chaos" if lab.scenario.chaos_kills else None)
    match kind:
        case "sigkill":
            _sigkill(lab)
        case "zombie":
            _zombie(lab)
        case "rolling":
            _rolling(lab)
        case "chaos":
            _chaos(lab)
        case "mixed":  # fleet/chaos runs in fleet_chaos.py
            raise HarnessError("fleet/chaos is not run by takeover.py")
        case None:
            raise HarnessError("not a multi-worker scenario")
        case _:
            assert_never(kind)
    lab.wait_done()
    lab.collect(started)
    lab.report.first_resumed_step = lab.report.restart_seconds = None  # no restart of all
    judge_takeovers(lab)
    for worker in lab.crew:
        if worker.running():
            worker.stop()


def _start(lab: Lab, worker: ServiceHarness) -> None:
    worker.start(PACE, via_dbos_start=lab.scenario.via_dbos_start)


def await_rows(lab: Lab, fraction: float) -> None:
    target = int(fraction * lab.report.messages)
    deadline = time.monotonic() + WAIT_SEC
    while lab.ledger_rows() < target and time.monotonic() < deadline:
        time.sleep(0.02)


def _sigkill(lab: Lab) -> None:
    await_rows(lab, FAULT_AT)
    kill(lab, _busiest(lab))


def _busiest(lab: Lab) -> ServiceHarness:
    """The worker running the most workflows right now: its loss moves the most work."""
    none: list[WorkflowStatus] = []
    active = lab.outages.poll(lab.harness.active_workflow_statuses, none)
    running = Counter(wf.executor_id for wf in active if wf.status == "PENDING")
    return max(lab.crew, key=lambda worker: running[worker.executor_id()])


def kill(lab: Lab, victim: ServiceHarness) -> None:
    executor = victim.executor_id()
    pending = pending_of(lab, executor)
    victim.kill()  # returns once it is reaped: any step that starts later ran elsewhere
    lab.victims.append((executor or "?", time.time(), pending))


def _zombie(lab: Lab) -> None:
    await_rows(lab, FAULT_AT)
    victim = _busiest(lab)
    assert victim.process is not None
    executor = victim.executor_id()
    pending = pending_of(lab, executor)
    os.kill(victim.process.pid, signal.SIGSTOP)
    lab.victims.append((executor or "?", time.time(), pending))
    deadline = time.monotonic() + WAIT_SEC
    while not taken_over(lab, executor) and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(victim.process.pid, signal.SIGCONT)
    try:
        code = victim.wait_exit(timeout=WAIT_SEC)
    except subprocess.TimeoutExpired:  # still running: it never noticed it lost its lease
        victim.kill()
        code = None
    if code != EXIT_LEASE_LOST:
        lab.report.violations.append(
            f"the paused worker, taken over and resumed, ended with {code}, not "
            f"{EXIT_LEASE_LOST} (lease lost)"
        )


def _rolling(lab: Lab) -> None:
    for number, worker in enumerate(lab.crew, start=1):
        await_rows(lab, number / (len(lab.crew) + 1))
        worker.stop()  # SIGTERM: a clean stop marks its lease stopped
        _start(lab, worker)  # a new process: a new executor id


def _chaos(lab: Lab) -> None:
    rng = random.Random(lab.options.seed)  # noqa: S311 - a reproducible schedule
    kills = lab.options.kills or lab.scenario.chaos_kills
    points = sorted(rng.uniform(0.05, 0.85) for _ in range(kills))
    for point in points:
        await_rows(lab, point)
        alive = [w for w in lab.crew if w.running()]
        victim = rng.choice(alive)
        kill(lab, victim)
        if len(alive) == 1 or rng.random() < RESTART_CHANCE:
            _start(lab, victim)  # restarted; the others stay dead


def pending_of(lab: Lab, executor: str | None) -> set[str]:
    none: list[WorkflowStatus] = []
    active = lab.outages.poll(lab.harness.active_workflow_statuses, none)
    # PENDING only: an ENQUEUED workflow still carries its enqueuer's executor id, and any worker
    # dequeues it without a takeover.
    return {
        wf.workflow_id
        for wf in active
        if executor and wf.executor_id == executor and wf.status == "PENDING"
    }


def taken_over(lab: Lab, executor: str | None) -> bool:
    return any(t["executor_id"] == executor for t in _takeovers(lab))


def _takeovers(lab: Lab) -> list[dict[str, Any]]:
    def read() -> list[dict[str, Any]]:
        with short_lived_engine(lab.harness.app_db) as engine, engine.connect() as conn:
            return [t.__dict__ for t in leases.list_takeovers(conn)]

    return lab.outages.poll(read, [])


def _await_takeovers(lab: Lab) -> None:
    """A small run may finish before a survivor's next sweep: give each killed worker that had
    joined (it announced an executor id) a lease's time and a margin to be taken over."""
    expected = {executor for executor, _, _ in lab.victims if executor != "?"}
    if lab.scenario.takeover == "rolling" or not any(w.running() for w in lab.crew):
        return
    deadline = time.monotonic() + TAKEOVER_GRACE_SEC
    while time.monotonic() < deadline:
        if expected <= {t["executor_id"] for t in _takeovers(lab)}:
            return
        time.sleep(0.1)


def judge_takeovers(lab: Lab) -> None:
    """Each gone worker taken over exactly once; how soon its work resumed elsewhere."""
    _await_takeovers(lab)
    report = lab.report
    report.takeovers = [
        {k: t[k] for k in ("executor_id", "by_executor_id", "reason", "workflows", "claimed_at")}
        for t in _takeovers(lab)
    ]
    claims = Counter(t["executor_id"] for t in report.takeovers)
    for executor, count in claims.items():
        if count > 1:
            report.violations.append(f"executor {executor} was taken over {count} times")
    for executor, _killed_at, _pending in lab.victims:
        if executor != "?" and lab.scenario.takeover != "rolling" and claims[executor] == 0:
            report.violations.append(f"nobody took over the work of executor {executor}")
    _check_inspect_marks(lab)
    if lab.victims:
        _time_first_takeover(lab)


def _check_inspect_marks(lab: Lab) -> None:
    """`inspect` must mark, across the batches, as many workflows taken over from each gone
    executor as its takeover records say were recovered."""
    marked: Counter[str] = Counter()
    settings = lab.harness.settings()
    none: dict[str, Any] = {"workflows": []}
    for batch_id in (b.batch_id for b in lab.batches):
        described = lab.outages.poll(partial(history.describe, settings, batch_id), none)
        for workflow in described["workflows"]:
            marked.update(t["from_executor_id"] for t in workflow["taken_over"])
    lab.report.inspect_taken_over = dict(marked)
    recorded: Counter[str] = Counter()
    for takeover in lab.report.takeovers:
        recorded[takeover["executor_id"]] += takeover["workflows"] or 0
    for executor in sorted(set(recorded) | set(marked)):
        if marked[executor] != recorded[executor]:
            lab.report.violations.append(
                f"inspect marks {marked[executor]} workflows taken over from {executor}, "
                f"its takeovers recorded {recorded[executor]}"
            )


def _time_first_takeover(lab: Lab) -> None:
    executor, killed_at, pending = lab.victims[0]
    claimed = [t["claimed_at"] for t in lab.report.takeovers if t["executor_id"] == executor]
    if claimed:
        lab.report.kill_to_claim_sec = round(min(claimed) - killed_at, 3)
    none: dict[StepKey, dict[str, Any]] = {}
    steps = lab.outages.poll(lambda: lab.harness.steps(*(b.batch_id for b in lab.batches)), none)
    resumed = [
        step["started_at_epoch_ms"] / 1000
        for (workflow_id, _), step in steps.items()
        if workflow_id in pending
        and step["started_at_epoch_ms"] is not None
        and step["started_at_epoch_ms"] / 1000 > killed_at
    ]
    if resumed:
        lab.report.kill_to_resumed_sec = round(min(resumed) - killed_at, 3)
