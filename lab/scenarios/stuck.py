"""One stuck worker among several (issue 20): frozen by SIGSTOP, hung inside a chunk transaction,
or cut off from Postgres, past its lease. Judged by SQL as every scenario is (every batch exactly
once, the stuck worker's work taken over, nothing stranded), and during each fault on two
figures: the other workers commit again within the lease TTL and a margin of its start, and no
chunk transaction of the stuck worker outlives its lease (session_watch: Postgres ends it). Since
chunks insert counter deltas, a stuck chunk transaction no longer blocks the others' chunks, so
only the second figure shows a transaction that lifted its bounds."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, assert_never

import sqlalchemy as sa

from dbos_publishers._connections import CHUNK_APPLICATION_NAME
from dbos_publishers.store._database import short_lived_engine
from lab.scenarios import freeze_trap, session_watch, takeover
from lab.scenarios.harness import HarnessError, ServiceHarness, descendants
from lab.scenarios.lab import LAB_LEASES

if TYPE_CHECKING:
    from lab.scenarios.lab import Lab

TTL_SEC = float(LAB_LEASES["APP_LEASE_TTL_SEC"])
LIMIT_SEC = TTL_SEC + 5.0  # the others commit again within this long of the fault's start
# Postgres ends the stuck worker's open chunk transactions within this long of the fault's start.
SESSION_LIMIT_SEC = TTL_SEC + session_watch.SLACK_SEC
FAULT_AT = 0.15  # fraction of the messages in the ledger when the first fault lands
HOLD_TTLS = 4.0  # a freeze or a cut lasts this many lease TTLs
# The dequeue freeze also lasts past the old re-check window (3 TTLs from the takeover), with a
# margin for a loaded machine, so that window's broken variant strands the late dequeue.
RECHECK_TTLS, RECHECK_MARGIN_SEC = 3.0, 3.0
# Chunks start slowly, so the batches outlast every fault and its check window.
PACE = "chunk.start=delay(1000)@every"
# The worker to freeze or cut off holds each chunk transaction open after its writes for a
# moment, so the fault lands inside one (its counter rows held) without luck.
HOLD_OPEN = "chunk.before_commit=delay(100)@every"
HANG_AT = 5  # the hung worker's nth chunk commit hangs
OPEN_AGE_MS = 20  # idle in its transaction this long: past the writes, in the delay
WAIT_SEC = 60.0
POLL_SEC = 0.01
EXIT_LEASE_LOST = 3


def run(lab: Lab) -> None:
    """Start every worker (the one that gets stuck with its fault's failpoints), make it stuck,
    let the others finish, then judge by SQL and by their progress during each fault."""
    kind = lab.scenario.stuck
    if kind == "partition":
        _isolate(lab, lab.crew[1])
    lab.submit()
    for number, worker in enumerate(lab.crew):
        worker.start(_failpoints(lab, number))
    started = time.time()
    match kind:
        case "freeze":
            _freeze_in_chunk(lab, lab.crew[1])
            _freeze_in_dequeue(lab, lab.crew[2])
        case "hang":
            _hang(lab, lab.crew[1])
        case "partition":
            _partition(lab, lab.crew[1])
        case None:
            raise HarnessError("not a stuck-worker scenario")
        case _:
            assert_never(kind)
    lab.wait_done()
    lab.collect(started)
    lab.report.first_resumed_step = lab.report.restart_seconds = None  # no restart of all
    takeover.judge_takeovers(lab)
    judge_progress(lab)
    judge_sessions(lab)
    for worker in lab.crew:
        if worker.running():
            worker.stop()


def _failpoints(lab: Lab, number: int) -> str:
    if number != 1:
        return PACE
    if lab.scenario.stuck == "hang":
        return f"{PACE};chunk.before_commit=hang@{HANG_AT}"
    return f"{PACE};{HOLD_OPEN}"


def _isolate(lab: Lab, victim: ServiceHarness) -> None:
    """The worker runs in the namespace and reaches Postgres at the host's end of the link."""
    ns = lab.netns
    if ns is None:
        raise HarnessError("fleet/partition needs its network namespace")
    via = f"@{ns.host_ip}:"
    urls = victim.databases
    victim.databases = dataclasses.replace(
        urls,
        system_url=urls.system_url.replace("@127.0.0.1:", via),
        app_url=urls.app_url.replace("@127.0.0.1:", via),
    )
    victim.command_prefix = ns.exec_prefix()


# ---- the faults ------------------------------------------------------------------------------


def _freeze_in_chunk(lab: Lab, victim: ServiceHarness) -> None:
    takeover.await_rows(lab, FAULT_AT)
    inside = _await_open_chunk(lab, victim)
    signal_all(victim, signal.SIGSTOP)
    fault = began(lab, "freeze (SIGSTOP) in a chunk transaction", victim, inside=inside)
    lab.progress.update(f"{lab.scenario.name}: {fault['executor_id']} frozen in a chunk")
    sleep_until(fault["started_at"] + HOLD_TTLS * TTL_SEC)
    thaw(lab, fault, victim)


def _freeze_in_dequeue(lab: Lab, victim: ServiceHarness) -> None:
    """The trap (freeze_trap) stops the worker itself inside its next dequeue; it thaws past
    its takeover's old re-check window, commits the dequeue, and finds its lease lost."""
    trigger = victim.workdir / freeze_trap.TRIGGER
    trigger.touch()
    if not _await_stopped(victim):
        trigger.unlink(missing_ok=True)
        lab.report.violations.append("the freeze trap never fired inside a dequeue")
        return
    fault = began(lab, "freeze (SIGSTOP) in a dequeue", victim, inside=True)
    lab.progress.update(f"{lab.scenario.name}: {fault['executor_id']} frozen in a dequeue")
    claimed = _await_takeover(lab, fault["executor_id"])
    recheck_ends = claimed + RECHECK_TTLS * TTL_SEC + RECHECK_MARGIN_SEC
    sleep_until(max(fault["started_at"] + HOLD_TTLS * TTL_SEC, recheck_ends))
    thaw(lab, fault, victim)


def _hang(lab: Lab, victim: ServiceHarness) -> None:
    """The hung worker keeps its lease (its heartbeat runs on); after the check window the lab
    SIGKILLs it, and the others take its work over."""
    hung_at = await_hang(victim)
    fault = began(lab, "hang before a chunk commit", victim, inside=True, at=hung_at)
    lab.progress.update(f"{lab.scenario.name}: {fault['executor_id']} hung in a chunk")
    sleep_until(hung_at + LIMIT_SEC + 1.0)
    fault["lasted_sec"] = round(time.time() - hung_at, 2)
    takeover.kill(lab, victim)
    fault["ended"] = "SIGKILL by the lab after the check window"


def _partition(lab: Lab, victim: ServiceHarness) -> None:
    assert lab.netns is not None  # _isolate made it
    takeover.await_rows(lab, FAULT_AT)
    inside = _await_open_chunk(lab, victim)
    lab.netns.cut()
    fault = began(lab, "network partition (veth down) in a chunk transaction", victim, inside)
    lab.progress.update(f"{lab.scenario.name}: {fault['executor_id']} cut off")
    sleep_until(fault["started_at"] + HOLD_TTLS * TTL_SEC)
    fault["lasted_sec"] = round(time.time() - fault["started_at"], 2)
    lab.netns.heal()
    fault["ended"] = _await_exit(victim)
    _expect_lease_lost(lab, fault)


def began(
    lab: Lab, what: str, victim: ServiceHarness, inside: bool, at: float | None = None
) -> dict[str, Any]:
    """Record a fault that has just begun, and its worker as one the others must take over."""
    started = time.time() if at is None else at
    executor = victim.executor_id() or "?"
    fault: dict[str, Any] = {
        "fault": what,
        "executor_id": executor,
        "worker": lab.crew.index(victim),
        "inside": inside,  # it landed inside a chunk transaction or a dequeue
        "at_rows": lab.ledger_rows(),
        "started_at": started,
        "limit_sec": LIMIT_SEC,
        "session_limit_sec": SESSION_LIMIT_SEC,
        "lasted_sec": 0.0,
        "ended": "running",
    }
    lab.report.stuck_faults.append(fault)
    lab.session_watches.append(session_watch.SessionWatch(lab.harness.app_db, executor, started))
    if lab.scenario.stuck != "hang":  # the hung worker is taken over once it is killed
        lab.victims.append((executor, started, takeover.pending_of(lab, executor)))
    return fault


def thaw(lab: Lab, fault: dict[str, Any], victim: ServiceHarness) -> None:
    fault["lasted_sec"] = round(time.time() - fault["started_at"], 2)
    signal_all(victim, signal.SIGCONT)
    fault["ended"] = _await_exit(victim)
    _expect_lease_lost(lab, fault)


def _expect_lease_lost(lab: Lab, fault: dict[str, Any]) -> None:
    if fault["ended"] != f"exit {EXIT_LEASE_LOST}":
        lab.report.violations.append(
            f"{fault['fault']}: the worker, taken over and back, ended with {fault['ended']}, "
            f"not exit {EXIT_LEASE_LOST} (lease lost)"
        )


# ---- waiting on the worker and the database ------------------------------------------------


def signal_all(victim: ServiceHarness, signum: int) -> None:
    """The service process and everything it started."""
    assert victim.process is not None
    for pid in [victim.process.pid, *descendants(victim.process.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _await_stopped(victim: ServiceHarness) -> bool:
    assert victim.process is not None
    stat = Path(f"/proc/{victim.process.pid}/stat")
    deadline = time.monotonic() + WAIT_SEC
    while time.monotonic() < deadline and victim.running():
        with contextlib.suppress(OSError, IndexError):
            if stat.read_text().rsplit(")", 1)[1].split()[0] == "T":
                return True
        time.sleep(POLL_SEC)
    return False


def _await_open_chunk(lab: Lab, victim: ServiceHarness) -> bool:
    """Until one of the worker's chunk transactions sits open after its writes (see HOLD_OPEN);
    False if none did within WAIT_SEC."""
    name = f"{CHUNK_APPLICATION_NAME} {victim.executor_id()}"[:63]
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name AND state = "
        "'idle in transaction' AND now() - state_change > make_interval(secs => :age)"
    )
    deadline = time.monotonic() + WAIT_SEC
    with short_lived_engine(lab.harness.app_db) as engine, engine.connect() as conn:
        while time.monotonic() < deadline:
            found = conn.execute(query, {"name": name, "age": OPEN_AGE_MS / 1000}).scalar_one()
            conn.rollback()  # a new snapshot of pg_stat_activity each time
            if found:
                return True
            time.sleep(POLL_SEC)
    return False


def await_hang(victim: ServiceHarness) -> float:
    """When the hang failpoint fired (its log record's time)."""
    deadline = time.monotonic() + WAIT_SEC
    while time.monotonic() < deadline:
        for record in victim.records():
            if record.get("event") == "failpoint_fired" and record.get("action") == "hang":
                return _epoch(record)
        time.sleep(0.05)
    raise HarnessError(f"the hang failpoint never fired:\n{victim.tail()}")


def _await_takeover(lab: Lab, executor: str) -> float:
    """When the lab saw the worker taken over (now, if it never was within WAIT_SEC)."""
    deadline = time.monotonic() + WAIT_SEC
    while not takeover.taken_over(lab, executor) and time.monotonic() < deadline:
        time.sleep(0.1)
    return time.time()


def _await_exit(victim: ServiceHarness) -> str:
    try:
        return f"exit {victim.wait_exit(timeout=WAIT_SEC)}"
    except subprocess.TimeoutExpired:
        victim.kill()
        return f"still running {WAIT_SEC:.0f} s later (the lab killed it)"


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


def _epoch(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(record["timestamp"])).timestamp()


# ---- the verdict on progress -----------------------------------------------------------------


def judge_progress(lab: Lab) -> None:
    """For each fault: how soon after its start another worker committed a chunk (their logs'
    step_committed records); none within LIMIT_SEC is a violation."""
    for fault in lab.report.stuck_faults:
        others = [w for n, w in enumerate(lab.crew) if n != fault["worker"]]
        first = _first_commit_after(others, fault["started_at"])
        fault["survivors_resumed_sec"] = first
        fault["late_recovered"] = _late_recovered(others, fault["executor_id"])
        if first is None or first > LIMIT_SEC:
            lab.report.violations.append(
                f"{fault['fault']}: the other workers committed no chunk within "
                f"{LIMIT_SEC:.0f} s of its start (lease TTL {TTL_SEC:.0f} s + 5 s)"
                + ("" if first is None else f"; the first {first:.1f} s after")
            )


def _first_commit_after(workers: list[ServiceHarness], since: float) -> float | None:
    commits = [
        _epoch(r)
        for worker in workers
        for r in worker.all_records()
        if r.get("event") == "step_committed" and "/chunk-" in str(r.get("workflow_id"))
    ]
    later = [at for at in commits if at > since]
    return round(min(later) - since, 3) if later else None


def _late_recovered(workers: list[ServiceHarness], executor: str) -> int:
    """Workflows the others found PENDING under the gone executor after its takeover."""
    return sum(
        len(r.get("workflows") or [])
        for worker in workers
        for r in worker.all_records()
        if r.get("event") == "worker_late_work_recovered" and r.get("executor_id") == executor
    )


# ---- the verdict on the stuck worker's chunk transactions ------------------------------------


def judge_sessions(lab: Lab) -> None:
    """For each fault: how soon after its start Postgres had ended every chunk transaction the
    stuck worker had open (the bounds' purpose: none outlives the lease); later is a violation."""
    for fault, watch in zip(lab.report.stuck_faults, lab.session_watches, strict=True):
        ended = watch.stop()
        fault["stuck_sessions"] = len(watch.watched)
        fault["session_ended_sec"] = ended if watch.watched else None
        if watch.watched and (ended is None or ended > SESSION_LIMIT_SEC):
            lab.report.violations.append(
                f"{fault['fault']}: a chunk transaction of {fault['executor_id']} outlived its "
                f"lease: still open {SESSION_LIMIT_SEC:.0f} s after the fault's start (lease TTL "
                f"{TTL_SEC:.0f} s + {session_watch.SLACK_SEC:.0f} s); {_session_end(watch)}"
            )


def _session_end(watch: session_watch.SessionWatch) -> str:
    if watch.error is not None:
        return f"the watch failed: {watch.error}"
    if watch.ended_sec is None:
        return "still open when the lab stopped watching, after the batches finished"
    return f"the last ended {watch.ended_sec:.1f} s after"
