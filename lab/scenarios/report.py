"""What a scenario found, as data (for --json) and as text people read."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class FaultRun:
    """One faulty run of the service and how it ended."""

    run: int
    failpoints: str
    ended: str  # e.g. "SIGKILL by failpoint", "SIGKILL by the lab at 3120 ledger rows"
    ledger_rows: int  # when it ended
    fired: list[dict[str, Any]] = field(default_factory=list)  # failpoint, action, workflow, step


@dataclass
class StepRef:
    workflow_id: str
    step_id: int
    name: str
    seconds_after_restart: float


@dataclass
class Effects:
    attempts: int
    effects: int
    deduplicated: int


@dataclass
class ScenarioReport:
    scenario: str
    summary: str
    backend: str
    seed: int
    messages: int
    batches: int
    fault_runs: list[FaultRun] = field(default_factory=list)
    outcome: str = "complete"  # or "contained": a permanent error stopped part of the work
    reported_failed: int = 0  # contained: messages of workflows that ended in ERROR
    first_resumed_step: StepRef | None = None
    steps_checkpointed: int = 0
    steps_reexecuted: list[str] = field(default_factory=list)  # "workflow#step", ran after commit
    ledger_rows: int = 0
    duplicates: int = 0
    missing: int = 0
    missing_ids: list[str] = field(default_factory=list)
    counters: list[dict[str, Any]] = field(default_factory=list)
    stranded: list[str] = field(default_factory=list)  # PENDING/ENQUEUED at the end
    unfinished: dict[str, str] = field(default_factory=dict)  # batch id -> final status
    effects: Effects | None = None
    restart_seconds: float | None = None  # restart to first resumed step
    total_seconds: float = 0.0
    workers: int = 1
    takeovers: list[dict[str, Any]] = field(default_factory=list)  # who took whom over, why
    kill_to_claim_sec: float | None = None  # multi-worker: the fault to the survivor's claim
    kill_to_resumed_sec: float | None = None  # ... to the first step of a taken-over workflow
    inspect_taken_over: dict[str, int] = field(default_factory=dict)  # gone executor -> marked
    # Database outages the lab met while polling (not invariant violations: the lab waited them
    # out; one that outlasts OUTAGE_LIMIT_SEC also stops the scenario with a violation).
    infrastructure: list[str] = field(default_factory=list)
    # pg/*: each Postgres fault (what, when, how long, fault end to the next committed chunk)
    infra_faults: list[dict[str, Any]] = field(default_factory=list)
    terminated_connections: list[int] = field(default_factory=list)  # per pg_terminate_backend
    probes: dict[str, list[int]] = field(default_factory=dict)  # /readyz, /healthz statuses
    outage_log: dict[str, int] = field(default_factory=dict)  # outage lines the service logged
    supervisor_restarts: list[str] = field(default_factory=list)  # the service exited: why
    # fleet/*: each stuck worker (what, whose, when, how long, how it ended) and how soon after
    # the fault's start the other workers committed a chunk again
    stuck_faults: list[dict[str, Any]] = field(default_factory=list)
    chaos_schedule: list[dict[str, Any]] = field(default_factory=list)  # fleet/chaos: its faults
    fault_to_done_sec: float | None = None  # pg/*: the last fault's end to all work done
    deploy: list[str] = field(default_factory=list)  # upgrade/*: what N+1 and `upgrade` did
    lifecycle: list[str] = field(default_factory=list)  # lifecycle/*: cancel, resume, retry
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _mark(ok: bool) -> str:
    return "ok" if ok else "VIOLATED"


def _fault_lines(report: ScenarioReport) -> list[str]:
    lines = []
    for run in report.fault_runs:
        spec = run.failpoints or "(no failpoint)"
        lines.append(f"  run {run.run}: {spec} -> {run.ended}; ledger rows then: {run.ledger_rows}")
        for fired in run.fired:
            where = fired.get("workflow_id") or f"the {fired.get('process')}, outside any workflow"
            step = f", step {fired['step_id']}" if fired.get("step_id") is not None else ""
            lines.append(f"    fired {fired['failpoint']} ({fired['action']}) in {where}{step}")
    return lines


def _resume_lines(report: ScenarioReport) -> list[str]:
    first = report.first_resumed_step
    lines = []
    if first is None:
        lines.append("  first step after the restart: none (no step was left to run)")
    else:
        lines.append(
            f"  first step after the restart: {first.workflow_id} step {first.step_id} "
            f"({first.name}), {first.seconds_after_restart:.2f} s after the restart"
        )
    reexecuted = report.steps_reexecuted
    lines.append(
        f"  steps that ran again after they had committed: {len(reexecuted)} of "
        f"{report.steps_checkpointed} committed  [{_mark(not reexecuted)}]"
        + (f"  {', '.join(reexecuted[:5])}" if reexecuted else "")
    )
    return lines


def _ledger_lines(report: ScenarioReport) -> list[str]:
    expected = report.messages - report.reported_failed
    lines = []
    if report.outcome == "contained":
        lines.append(
            f"  permanent error contained: {report.reported_failed} messages reported failed "
            "(their workflow ended in ERROR), the rest must be published exactly once"
        )
    lines.append(
        f"  ledger rows: {report.ledger_rows}, expected {expected}  "
        f"duplicates: {report.duplicates}  missing: {report.missing}  "
        f"[{_mark(report.ledger_rows == expected and not report.missing)}]"
    )
    if report.missing_ids:
        lines.append(f"  missing message ids: {', '.join(report.missing_ids)}")
    for row in report.counters:
        lines.append(
            f"  {row['kind']} counter {row['key']}: {row['value']}, expected "
            f"{row['expected']}  [{_mark(row['value'] == row['expected'])}]"
        )
    return lines


def _work_lines(report: ScenarioReport) -> list[str]:
    stranded = report.stranded
    lines = [
        f"  left PENDING/ENQUEUED: {len(stranded)}  [{_mark(not stranded)}]"
        + (f"  {', '.join(stranded[:5])}" if stranded else "")
    ]
    for batch_id, status in report.unfinished.items():
        lines.append(f"  batch {batch_id} ended {status}  [VIOLATED]")
    if report.effects is not None:
        e = report.effects
        lines.append(
            f"  side effects: {e.attempts} delivery attempts, {e.effects} applied, "
            f"{e.deduplicated} deduplicated by key, for {report.messages} messages  "
            f"[{_mark(e.effects == report.messages)}]"
        )
    return lines


def _takeover_lines(report: ScenarioReport) -> list[str]:
    if report.workers == 1:
        return []
    lines = [f"  workers: {report.workers}; takeovers: {len(report.takeovers)}"]
    lines += [
        f"    {t['by_executor_id']} took over {t['executor_id']} ({t['reason']}), "
        f"{t['workflows']} workflows"
        for t in report.takeovers
    ]
    if report.inspect_taken_over:
        marks = ", ".join(f"{n} from {e}" for e, n in sorted(report.inspect_taken_over.items()))
        lines.append(f"  inspect marks taken over: {marks}")
    if report.kill_to_claim_sec is not None:
        resumed = report.kill_to_resumed_sec
        lines.append(
            f"  fault to claim: {report.kill_to_claim_sec:.2f} s; to the first resumed step of a "
            f"taken-over workflow: {'-' if resumed is None else f'{resumed:.2f} s'}"
        )
    return lines


def _infra_lines(report: ScenarioReport) -> list[str]:
    lines = []
    for fault in report.infra_faults:
        first = fault.get("to_first_commit_sec")
        lasted = f", lasted {fault['lasted_sec']:.2f} s" if "lasted_sec" in fault else ""
        at = f" at {fault['at_rows']} ledger rows" if "at_rows" in fault else ""
        lines.append(
            f"  fault: {fault['fault']}{at}{lasted}; first chunk committed "
            + ("-" if first is None else f"{first:.2f} s after")
        )
    if report.terminated_connections:
        lines.append(f"  connections terminated: {report.terminated_connections}")
    for name, codes in report.probes.items():
        lines.append(f"  {name}: {codes}")
    if report.outage_log:
        lines.append(f"  outage log lines: {report.outage_log}")
    lines += [f"  supervisor restart: {why}" for why in report.supervisor_restarts]
    if report.fault_to_done_sec is not None:
        lines.append(f"  last fault to all work done: {report.fault_to_done_sec:.1f} s")
    return lines


def _stuck_lines(report: ScenarioReport) -> list[str]:
    lines = _schedule_lines(report)
    for fault in report.stuck_faults:
        resumed = fault.get("survivors_resumed_sec")
        late = fault.get("late_recovered")
        lines.append(
            f"  stuck: {fault['fault']} of {fault['executor_id']} at {fault['at_rows']} ledger "
            f"rows for {fault['lasted_sec']:.1f} s, then {fault['ended']}; the others committed "
            + ("nothing" if resumed is None else f"{resumed:.2f} s")
            + f" after its start (limit {fault['limit_sec']:.0f} s)"
            + _session_figure(fault)
            + (f"; late PENDING work recovered: {late} workflows" if late else "")
        )
    return lines


def _session_figure(fault: dict[str, Any]) -> str:
    """The stuck worker's own chunk transactions: when Postgres had ended the last of them."""
    if "stuck_sessions" not in fault:
        return ""
    if not fault["stuck_sessions"]:
        return "; it had no chunk transaction open"
    ended = fault["session_ended_sec"]
    return (
        f"; its {fault['stuck_sessions']} open chunk transaction(s) ended "
        + ("never" if ended is None else f"{ended:.2f} s")
        + f" after its start (limit {fault['session_limit_sec']:.0f} s)"
    )


def render(report: ScenarioReport) -> str:
    restart = "-" if report.restart_seconds is None else f"{report.restart_seconds:.2f} s"
    lines = [
        f"scenario {report.scenario}: {report.summary}",
        f"  backend {report.backend}, {report.messages} messages in {report.batches} batches, "
        f"seed {report.seed}",
        *_fault_lines(report),
        *_resume_lines(report),
        *_ledger_lines(report),
        *_work_lines(report),
        f"  restart to first resumed step: {restart}   total: {report.total_seconds:.1f} s",
    ]
    lines += _takeover_lines(report)
    lines += _infra_lines(report)
    lines += _stuck_lines(report)
    lines += [f"  deploy: {line}" for line in report.deploy]
    lines += [f"  lifecycle: {line}" for line in report.lifecycle]
    lines += [f"  infrastructure: {event}" for event in report.infrastructure]
    if report.violations:
        lines += [f"  violation: {v}" for v in report.violations]
    lines.append(f"  RESULT: {'PASS' if report.ok else 'FAIL'}")
    return "\n".join(lines)


def _schedule_lines(report: ScenarioReport) -> list[str]:
    """fleet/chaos: how many faults of each kind its seed drew."""
    if not report.chaos_schedule:
        return []
    kinds = Counter(event["kind"] for event in report.chaos_schedule)
    drawn = ", ".join(f"{kinds[k]} {k}" for k in ("kill", "freeze", "hang"))
    return [f"  schedule (seed {report.seed}): {len(report.chaos_schedule)} faults: {drawn}"]
