"""Postgres faults mid-batch on the lab's own cluster: restarts, outages, dropped connections,
crashes; the running service must finish the work exactly once without a hand restart. Where it
exits instead (by design: a clear line, non-zero), the lab restarts it as a supervisor would, and
the restart must finish the work."""

from __future__ import annotations

import contextlib
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, assert_never

from lab.scenarios.chaos import PACE
from lab.scenarios.cluster import Cluster
from lab.scenarios.harness import HarnessError

if TYPE_CHECKING:
    from lab.scenarios.lab import Lab

FAULT_AT = 0.3  # fraction of the messages in the ledger when the (first) fault lands
TERMINATIONS = (0.25, 0.45, 0.65)  # pg_terminate_backend at these fractions
WAIT_SEC = 120.0
# No progress for this long, the service alive and Postgres up: stranded. Past DBOS's own
# reconnect backoff (doubling from 1 s up to 60 s): after a 30 s outage a workflow may sleep
# 32 s before its next try.
STALL_SEC = 75.0
PROBE_SEC = 2.0
CHAOS_FAULTS = (
    "service SIGKILL",
    "fast restart",
    "immediate stop and start",
    "pg_terminate_backend",
    "outage",
)
CHAOS_OUTAGE_SEC = (1.0, 5.0)
PROBE_TIMEOUT_SEC = 5.0
OUTAGE_LOG_LIMIT = 2  # warning-or-worse lines an outage may cost: gone once, (no) flood


def run(lab: Lab) -> None:
    """Submit, start the service, land the fault, supervise until the work is done, judge."""
    cluster = lab.cluster
    if cluster is None:
        raise HarnessError(f"{lab.scenario.name} needs the lab's own Postgres cluster")
    lab.http_base = lab.harness.enable_http()
    lab.submit()
    lab.harness.start(PACE)
    started = time.time()
    kind = lab.scenario.infra
    match kind:
        case "restart":
            _at(lab, FAULT_AT, "fast restart", cluster.restart)
        case "immediate-stop":
            _at(lab, FAULT_AT, "immediate stop and start", lambda: _crash(cluster))
        case "outage":
            _outage(lab, cluster)
        case "terminate-connections":
            for point in TERMINATIONS:
                _at(lab, point, "pg_terminate_backend", lambda: _terminate(lab, cluster))
        case "restart-during-recovery":
            _restart_during_recovery(lab, cluster)
        case "chaos":
            _chaos(lab, cluster)
        case None:
            raise HarnessError("not an infrastructure scenario")
        case _:
            assert_never(kind)
    faults_ended = time.monotonic()
    _supervise(lab)
    lab.report.fault_to_done_sec = round(time.monotonic() - faults_ended, 2)
    lab.collect(started)
    lab.report.first_resumed_step = lab.report.restart_seconds = None  # timed per fault instead
    if kind == "outage":
        _judge_outage(lab)  # after the work: the service says it is back within a second
    if lab.harness.running():
        lab.harness.stop()


def _await_rows(lab: Lab, fraction: float) -> int:
    target = int(fraction * lab.report.messages)
    deadline = time.monotonic() + WAIT_SEC
    rows = lab.ledger_rows()
    while rows < target and lab.harness.running() and time.monotonic() < deadline:
        time.sleep(0.02)
        rows = lab.ledger_rows()
    return rows


def _at(lab: Lab, fraction: float, what: str, fault: Callable[[], object]) -> None:
    """At `fraction` of the messages: the fault, then how soon the next chunk committed."""
    rows = _await_rows(lab, fraction)
    at_sec = round(time.time() - lab.harness.started_at[0], 2)
    began = time.monotonic()
    fault()
    ended = time.monotonic()
    lab.report.infra_faults.append(
        {
            "fault": what,
            "at_rows": rows,
            "at_sec": at_sec,
            "lasted_sec": round(ended - began, 2),
            "to_first_commit_sec": _first_commit_after(lab, ended),
        }
    )


def _crash(cluster: Cluster) -> None:
    cluster.stop("immediate")
    cluster.start()


def _terminate(lab: Lab, cluster: Cluster) -> None:
    database = lab.harness.app_db.sqlalchemy_url.database or ""
    lab.report.terminated_connections.append(cluster.terminate(database))


def _first_commit_after(lab: Lab, since: float) -> float | None:
    """Seconds from `since` until the ledger grows (None: it never did, or the work was done)."""
    rows = lab.ledger_rows()
    deadline = time.monotonic() + WAIT_SEC
    while time.monotonic() < deadline and rows < lab.report.messages:
        if lab.ledger_rows() > rows:
            return round(time.monotonic() - since, 3)
        if not lab.harness.running():
            return None  # it exited: the supervisor's restart is timed in the report instead
        time.sleep(0.01)
    return None


def _outage(lab: Lab, cluster: Cluster) -> None:
    """Postgres down for `outage_sec`; /readyz must say 503 during it and 200 after, /healthz
    200 throughout, and the log must say once that the database is gone and once that it is
    back."""
    outage_sec = lab.options.outage_sec
    probes = lab.report.probes

    def down() -> None:
        cluster.stop("fast")
        until = time.monotonic() + outage_sec
        while time.monotonic() < until:
            probes.setdefault("readyz_during", []).append(_get(lab, "/readyz"))
            probes.setdefault("healthz_during", []).append(_get(lab, "/healthz"))
            time.sleep(min(PROBE_SEC, max(0.0, until - time.monotonic())))
        cluster.start()

    _at(lab, FAULT_AT, f"stopped for {outage_sec:.0f} s", down)
    probes["readyz_after"] = _await_ready(lab)
    probes["healthz_after"] = [_get(lab, "/healthz")]


def _get(lab: Lab, path: str) -> int:
    """The HTTP status of GET path (0: no answer at all)."""
    try:
        with urllib.request.urlopen(lab.http_base + path, timeout=PROBE_TIMEOUT_SEC) as answer:  # noqa: S310 - the lab's loopback service
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def _await_ready(lab: Lab) -> list[int]:
    """/readyz until it says 200: the statuses it gave on the way, each once."""
    deadline = time.monotonic() + WAIT_SEC
    seen = [_get(lab, "/readyz")]
    while seen[-1] != HTTPStatus.OK and lab.harness.running() and time.monotonic() < deadline:
        time.sleep(0.2)
        code = _get(lab, "/readyz")
        if code != seen[-1]:
            seen.append(code)
    return seen


def _judge_outage(lab: Lab) -> None:
    report, probes = lab.report, lab.report.probes
    if HTTPStatus.SERVICE_UNAVAILABLE not in probes.get("readyz_during", []):
        report.violations.append(f"/readyz never said 503 during the outage: {probes}")
    if set(probes.get("healthz_during", [])) != {200}:
        report.violations.append(f"/healthz was not 200 throughout the outage: {probes}")
    if probes["readyz_after"][-1:] != [HTTPStatus.OK]:
        report.violations.append(f"/readyz did not come back to 200: {probes}")
    records = lab.harness.records()
    told = {e: sum(r.get("event") == e for r in records) for e in _TOLD}
    report.outage_log = dict(told)
    noisy = [
        str(r.get("event"))[:60]
        for r in records
        if r.get("level") in ("warning", "error", "critical") and r.get("event") != PACED
    ]
    report.outage_log["warning_or_worse"] = len(noisy)
    if told != dict.fromkeys(_TOLD, 1):
        report.violations.append(
            f"the log did not say once that the database went and came back: {told}"
        )
    if len(noisy) > OUTAGE_LOG_LIMIT:
        report.violations.append(
            f"the outage flooded the log: {len(noisy)} warning lines ({sorted(set(noisy))[:5]})"
        )


_TOLD = ("database_unreachable", "database_reachable")
PACED = "failpoint_fired"  # the lab's own pacing delays log a warning per chunk


def _restart_during_recovery(lab: Lab, cluster: Cluster) -> None:
    """#716's shape: SIGKILL the service, start it again, restart Postgres while it recovers."""
    _await_rows(lab, FAULT_AT)
    lab.harness.kill()
    lab.harness.start(PACE, wait_ready=False)
    _await_event(lab, "worker_joined")  # started: migrated, about to launch and recover

    _at(lab, 0.0, "fast restart during recovery", cluster.restart)


def _chaos(lab: Lab, cluster: Cluster) -> None:
    """Seeded faults at seeded points of the run: the service SIGKILLed (and restarted, as by a
    supervisor) or Postgres restarted, crashed, stopped for a few seconds, or its connections
    terminated. The same seed gives the same schedule."""
    rng = random.Random(lab.options.seed)  # noqa: S311 - a reproducible schedule
    count = lab.options.kills or lab.scenario.chaos_kills
    points = sorted(rng.uniform(0.03, 0.9) for _ in range(count))
    for point in points:
        kind = rng.choice(CHAOS_FAULTS)
        outage = round(rng.uniform(*CHAOS_OUTAGE_SEC), 1)
        if not lab.harness.running():
            _restarted(lab)
        what = kind if kind != "outage" else f"outage {outage} s"
        _at(lab, point, what, _chaos_fault(lab, cluster, kind, outage))


def _chaos_fault(lab: Lab, cluster: Cluster, kind: str, outage_sec: float) -> Callable[[], None]:
    def kill() -> None:
        lab.harness.kill()
        lab.restart_until_up(PACE)  # a supervisor's restart

    def outage() -> None:
        cluster.stop("fast")
        time.sleep(outage_sec)  # the fault itself: Postgres stays down this long
        cluster.start()

    faults: dict[str, Callable[[], None]] = {
        "service SIGKILL": kill,
        "fast restart": cluster.restart,
        "immediate stop and start": lambda: _crash(cluster),
        "pg_terminate_backend": lambda: _terminate(lab, cluster),
        "outage": outage,
    }
    return faults[kind]


def _await_event(lab: Lab, event: str) -> None:
    deadline = time.monotonic() + WAIT_SEC
    while time.monotonic() < deadline and lab.harness.running():
        if any(r.get("event") == event for r in lab.harness.records()):
            return
        time.sleep(0.01)


def _supervise(lab: Lab) -> None:
    """Until the work is done or stalls: restart the service whenever it exits (a supervisor),
    each exit reported with its last line."""
    deadline = time.monotonic() + WAIT_SEC * 5
    last: tuple[int, int] = (-1, -1)
    since = time.monotonic()
    while time.monotonic() < deadline:
        if not lab.harness.running():
            _restarted(lab)
            continue
        if lab.done():
            return
        state = (lab.ledger_rows(), len(lab.active()))
        if state != last:
            last, since = state, time.monotonic()
        elif time.monotonic() - since > STALL_SEC:
            return  # alive, Postgres up, nothing moving: collect() reports what is stranded
        time.sleep(0.1)


def _restarted(lab: Lab) -> None:
    code = lab.harness.process.returncode if lab.harness.process else None
    reason = _last_error(lab.harness.records()) or lab.harness.tail(1)
    lab.report.supervisor_restarts.append(f"exit {code}: {reason}")
    if code == 0:
        lab.report.violations.append("the service exited 0 in the middle of the work")
    began = time.monotonic()
    with contextlib.suppress(HarnessError):
        lab.restart_until_up(PACE)
    lab.report.infra_faults.append(
        {
            "fault": f"supervisor restart after exit {code}",
            "to_first_commit_sec": _first_commit_after(lab, began),
        }
    )


def _last_error(records: list[dict[str, object]]) -> str:
    for record in reversed(records):
        if record.get("level") in ("error", "critical"):
            return f"{record.get('event')} {record.get('reason') or ''}".strip()
    return ""
