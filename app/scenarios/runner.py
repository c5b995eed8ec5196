"""Run one scenario: the real service in a subprocess with a fault injected, a restart without it,
then the invariants: nothing lost, nothing duplicated, nothing stranded, counters exact, no step
that had committed ran again."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.invariants import more_missing_ids
from app.publishers.base import (
    BatchRequest,
    batch_workflow_id,
    chunk_workflow_id,
    plan_chunks,
)
from app.scenarios import chaos
from app.scenarios.catalog import Fault, Scenario
from app.scenarios.harness import (
    Databases,
    HarnessError,
    ScenarioBackend,
    ServiceHarness,
    json_records,
)
from app.scenarios.progress import Progress
from app.scenarios.receiver import Receiver
from app.scenarios.report import Effects, FaultRun, ScenarioReport, StepRef
from app.scratch import scratch_databases

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
TERMINAL = {"SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"}
FAULT_TIMEOUT_SEC = 120  # a planned fault that has not shown itself by then never will
FINISH_TIMEOUT_SEC = 600
POLL_SEC = 0.02


@dataclass(frozen=True)
class RunOptions:
    backend: ScenarioBackend = "sqlite"
    messages: int | None = None  # None: the scenario's own size
    seed: int = 0
    kills: int | None = None  # chaos only; None: the scenario's own count
    postgres_url: str = DEFAULT_POSTGRES
    stall_sec: float = 20.0  # no progress for this long after the restart: work is stranded


@dataclass(frozen=True)
class Batch:
    publisher: str
    topic: str
    batch_id: str
    count: int


def plan_batches(scenario: Scenario, messages: int) -> list[Batch]:
    """One batch per (publisher, topic), the messages split as evenly as they go."""
    pairs = [(p, t) for p in scenario.publishers for t in scenario.topics]
    base, extra = divmod(messages, len(pairs))
    return [
        Batch(p, t, f"{p}-{t}", base + (1 if k < extra else 0))
        for k, (p, t) in enumerate(pairs)
        if base + (1 if k < extra else 0)
    ]


def run(scenario: Scenario, options: RunOptions, progress: Progress) -> ScenarioReport:
    started = time.monotonic()
    with (
        scratch_databases(options.backend, options.postgres_url, "scenario") as (system, app),
        tempfile.TemporaryDirectory(prefix="scenario-") as workdir,
        _receiver(scenario) as receiver,
    ):
        databases = Databases(options.backend, system.raw, app.raw)
        harness = ServiceHarness(databases=databases, workdir=Path(workdir))
        lab = Lab(scenario, options, harness, receiver, progress)
        try:
            report = lab.run()
        except HarnessError as exc:  # the lab itself could not go on: a failed scenario
            report = lab.report
            report.violations.append(f"the lab stopped: {str(exc).splitlines()[0]}")
        finally:
            harness.kill()
            progress.clear()
    report.total_seconds = round(time.monotonic() - started, 2)
    return report


@contextlib.contextmanager
def _receiver(scenario: Scenario) -> Iterator[Receiver | None]:
    if not scenario.receiver:
        yield None
        return
    with Receiver() as receiver:
        yield receiver


@dataclass
class Lab:
    scenario: Scenario
    options: RunOptions
    harness: ServiceHarness
    receiver: Receiver | None
    progress: Progress
    batches: list[Batch] = field(default_factory=list)
    submitted: bool = False
    report: ScenarioReport = field(init=False)

    def __post_init__(self) -> None:
        messages = self.options.messages or self.scenario.messages
        self.batches = plan_batches(self.scenario, messages)
        self.report = ScenarioReport(
            scenario=self.scenario.name,
            summary=self.scenario.summary,
            backend=self.options.backend,
            seed=self.options.seed,
            messages=sum(b.count for b in self.batches),
            batches=len(self.batches),
            outcome=self.scenario.outcome,
        )
        endpoint = {"endpoint": self.receiver.url} if self.receiver else None
        self.harness.declare(
            self.scenario.publishers,
            chunk_size=self.scenario.chunk_size,
            chunk_concurrency=self.scenario.chunk_concurrency,
            options={name: endpoint for name in self.scenario.publishers} if endpoint else None,
        )
        self.harness.extra_env["APP_FAILPOINT_SEED"] = str(self.options.seed)

    def faults(self) -> tuple[Fault, ...]:
        if not self.scenario.chaos_kills:
            return self.scenario.faults
        return chaos.kill_schedule(
            self.options.kills or self.scenario.chaos_kills, self.options.seed
        )

    def run(self) -> ScenarioReport:
        faults = self.faults()
        for number, fault in enumerate(faults, start=1):
            self.progress.update(f"{self.scenario.name}: fault run {number}/{len(faults)}")
            self.faulty_run(fault)
        self.progress.update(f"{self.scenario.name}: restarted without faults")
        self.clean_run()
        return self.report

    # ---- faulty runs ----------------------------------------------------------------------

    def faulty_run(self, fault: Fault) -> None:
        # Submitted before the service starts, as a client would while it is down: the work
        # waits durably, and the first kill of a schedule is not held up by the submissions.
        fired = [] if self.submitted else self.submit(fault.failpoints)
        self.harness.start(fault.failpoints, wait_ready=False)
        ended = self._await_fault(fault, fired)
        self._fault_run(fault, ended, fired)

    def _await_fault(self, fault: Fault, fired: list[dict[str, Any]]) -> str:
        match fault.ends:
            case "crash" | "startup-fails":
                return self._wait_exit()
            case "submit-fails":
                self.harness.stop()
                return "publish failed" if fired else "publish succeeded"
            case "settled":
                self._wait_settled()
                self.harness.stop()
                return "settled"
            case "killed":
                return self._kill_at(fault)

    def _fault_run(self, fault: Fault, ended: str, fired: list[dict[str, Any]]) -> None:
        fired += _fired(self.harness.records(), "service")
        run = FaultRun(
            run=self.harness.starts,
            failpoints=fault.failpoints,
            ended=ended,
            ledger_rows=self._ledger_rows(),
            fired=fired,
        )
        self.report.fault_runs.append(run)
        expected = _EXPECTED_ENDING[fault.ends]
        if not ended.startswith(expected):
            self.report.violations.append(
                f"run {run.run}: the fault was to end it with {' or '.join(expected)}, "
                f"but it ended: {ended}"
            )

    def _wait_exit(self) -> str:
        try:
            code = self.harness.wait_exit(timeout=FAULT_TIMEOUT_SEC)
        except subprocess.TimeoutExpired:
            self.harness.kill()
            return f"still running after {FAULT_TIMEOUT_SEC} s (the lab killed it)"
        return self._ended(code)

    def _ended(self, code: int | None = None) -> str:
        code = self.harness.process.returncode if code is None and self.harness.process else code
        if code == -signal.SIGKILL:
            return "SIGKILL by the failpoint"
        return f"exit {code}"

    def _wait_settled(self) -> None:
        deadline = time.monotonic() + FAULT_TIMEOUT_SEC
        while time.monotonic() < deadline and self.harness.running():
            statuses = self._batch_statuses()
            if all(s in TERMINAL for s in statuses.values()) and not self._active():
                return
            time.sleep(0.1)

    def _kill_at(self, fault: Fault) -> str:
        target = int(fault.kill_at * self.report.messages)
        deadline = time.monotonic() + FAULT_TIMEOUT_SEC
        rows = self._ledger_rows()
        while rows < target and self.harness.running() and time.monotonic() < deadline:
            time.sleep(POLL_SEC)
            rows = self._ledger_rows()
        if not self.harness.running():
            return self._ended()
        time.sleep(fault.kill_delay_sec)
        self.harness.kill()
        return f"SIGKILL by the lab at {rows} ledger rows (planned at {target})"

    def submit(self, failpoints: str = "") -> list[dict[str, Any]]:
        """Publish every batch through the CLI; returns failpoint records of failed publishes."""
        fired: list[dict[str, Any]] = []
        for batch in self.batches:
            done = self.harness.cli(
                *("publish", batch.publisher, "--count", str(batch.count)),
                *("--topic", batch.topic, "--batch-id", batch.batch_id),
                APP_FAILPOINTS=failpoints,
            )
            if done.returncode != 0:
                fired += _fired(json_records(done.stdout + done.stderr), "publish client") or [
                    {"failpoint": "?", "action": f"publish exited {done.returncode}"}
                ]
        self.submitted = not fired
        return fired

    # ---- the restart without faults ---------------------------------------------------------

    def clean_run(self) -> None:
        restarted_at = time.time()
        try:
            self.harness.start("", env=self.scenario.restart_env)
        except HarnessError as exc:
            first_line = str(exc).splitlines()[0]
            self.report.violations.append(f"the restart without faults failed: {first_line}")
            self.collect(restarted_at)
            return
        # The client's retry: the same batch ids, so nothing is published twice.
        for failed in self.submit():
            self.report.violations.append(f"re-submitting after the restart failed: {failed}")
        self._wait_done()
        self.collect(restarted_at)
        self.harness.stop()

    def _wait_done(self) -> None:
        deadline = time.monotonic() + FINISH_TIMEOUT_SEC
        last: tuple[object, ...] = ()
        last_change = time.monotonic()
        while time.monotonic() < deadline:
            statuses = self._batch_statuses()
            active = self._active()
            if all(s in self._finished for s in statuses.values()) and not active:
                return
            rows = self._ledger_rows()
            self.progress.update(
                f"{self.scenario.name}: ledger {rows}/{self.report.messages}, "
                f"{len(active)} workflows active"
            )
            state = (rows, len(active), tuple(sorted(statuses.items())))
            if state != last:
                last, last_change = state, time.monotonic()
            elif time.monotonic() - last_change > self.options.stall_sec:
                return  # stranded: the report says what is left
            time.sleep(0.1)

    # ---- the verdict ------------------------------------------------------------------------

    def collect(self, restarted_at: float) -> None:
        report = self.report
        self._collect_ledger()
        report.stranded = self._active()
        if report.stranded:
            report.violations.append(f"{len(report.stranded)} workflows left PENDING or ENQUEUED")
        statuses = self._batch_statuses()
        report.unfinished = {b: s for b, s in statuses.items() if s not in self._finished}
        for batch_id, status in report.unfinished.items():
            report.violations.append(f"batch {batch_id} ended {status}")
        self._collect_steps(restarted_at)
        self._collect_effects()

    @property
    def _finished(self) -> set[str]:
        # A contained failure ends its batch in ERROR on purpose: reported, not stranded.
        return {"SUCCESS", "ERROR"} if self.scenario.outcome == "contained" else {"SUCCESS"}

    def _collect_ledger(self) -> None:
        report = self.report
        complete = self.scenario.outcome == "complete"
        check = self.harness.check(
            {b.batch_id: b.count for b in self.batches} if complete else None
        )
        report.ledger_rows = check.ledger_rows
        report.duplicates = sum(check.duplicates.values())
        report.missing = sum(check.missing.values())
        report.missing_ids = check.missing_ids
        report.violations += check.violations
        published = {b.batch_id: b.count for b in self.batches}
        if not complete:
            published = self._collect_contained()
        local: Counter[str] = Counter()
        topic: Counter[str] = Counter()
        for b in self.batches:
            local[f"{b.publisher}/{b.topic}"] += published[b.batch_id]
            topic[b.topic] += published[b.batch_id]
        report.counters = [
            _counter("local", f"{row.publisher}/{row.topic}", row.local_counter, local)
            for row in check.publishers
        ] + [_counter("global", row.topic, row.global_counter, topic) for row in check.topics]

    def _collect_contained(self) -> dict[str, int]:
        """After a permanent error: the ledger holds exactly the messages of the chunks that
        succeeded; every other message belongs to a failure the batch reports. Returns how many
        messages of each batch must be published."""
        published = {}
        statuses: dict[str, str] = {
            wf.workflow_id: wf.status
            for wf in self.harness.workflows(*(b.batch_id for b in self.batches))
        }
        for batch in self.batches:
            succeeded = self._succeeded_positions(batch, statuses)
            published[batch.batch_id] = len(succeeded)
            present = self.harness.positions(batch.batch_id)
            lost = sorted(succeeded - set(present))
            extra = sorted(set(present) - succeeded)
            self.report.missing += len(lost)
            self.report.missing_ids += more_missing_ids(
                self.report.missing_ids, batch.batch_id, lost
            )
            self.report.duplicates += len(present) - len(set(present))
            self.report.reported_failed += batch.count - len(succeeded)
            if lost or extra:
                self.report.violations.append(
                    f"batch {batch.batch_id}: {len(lost)} messages of succeeded chunks missing, "
                    f"{len(extra)} of failed chunks half-written"
                )
            if len(succeeded) < batch.count and not self._reports_failure(batch.batch_id):
                self.report.violations.append(
                    f"batch {batch.batch_id}: {batch.count - len(succeeded)} messages unpublished "
                    "but the batch reports no failure"
                )
        return published

    def _succeeded_positions(self, batch: Batch, statuses: dict[str, str]) -> set[int]:
        request = BatchRequest(
            batch_id=batch.batch_id, topic=batch.topic, count=batch.count, messages=None
        )
        return {
            position
            for chunk in plan_chunks(request, self.scenario.chunk_size)
            if statuses.get(chunk_workflow_id(batch.batch_id, chunk["index"])) == "SUCCESS"
            for position in range(chunk["start"], chunk["start"] + chunk["count"])
        }

    def _reports_failure(self, batch_id: str) -> bool:
        status, summary = self.harness.batch_outcome(batch_id)
        return status == "ERROR" or bool(summary and summary["failed"])

    def _collect_steps(self, restarted_at: float) -> None:
        commits = Counter(
            (r["workflow_id"], r.get("step_id"))
            for r in self.harness.all_records()
            if r.get("event") == "step_committed" and "workflow_id" in r
        )
        self.report.steps_checkpointed = len(commits)
        self.report.steps_reexecuted = [
            f"{wf}#{step}" for (wf, step), n in commits.items() if n > 1
        ]
        if self.report.steps_reexecuted:
            self.report.violations.append(
                f"{len(self.report.steps_reexecuted)} steps committed more than once"
            )
        self.report.first_resumed_step = self._first_step_after(restarted_at)
        if self.report.first_resumed_step is not None:
            self.report.restart_seconds = self.report.first_resumed_step.seconds_after_restart

    def _first_step_after(self, restarted_at: float) -> StepRef | None:
        since_ms = restarted_at * 1000
        steps = self.harness.steps(*(b.batch_id for b in self.batches))
        later = [
            (step["started_at_epoch_ms"], key, step)
            for key, step in steps.items()
            if step["started_at_epoch_ms"] is not None and step["started_at_epoch_ms"] >= since_ms
        ]
        if not later:
            return None
        started, (workflow_id, step_id), step = min(later, key=lambda item: item[0])
        return StepRef(
            workflow_id=workflow_id,
            step_id=step_id,
            name=step["function_name"],
            seconds_after_restart=round(started / 1000 - restarted_at, 3),
        )

    def _collect_effects(self) -> None:
        if self.receiver is None:
            return
        stats = self.receiver.stats()
        self.report.effects = Effects(stats.attempts, stats.effects, stats.deduplicated)
        if stats.effects != self.report.messages:
            self.report.violations.append(
                f"side effects applied {stats.effects} times for {self.report.messages} messages"
            )

    # ---- reads ------------------------------------------------------------------------------

    def _ledger_rows(self) -> int:
        try:
            return self.harness.ledger_rows()
        except Exception:  # the service has not created the ledger yet
            return 0

    def _active(self) -> list[str]:
        try:
            return self.harness.active_workflows()
        except Exception:  # DBOS's tables do not exist yet
            return []

    def _batch_statuses(self) -> dict[str, str]:
        ids = {batch_workflow_id(b.batch_id): b.batch_id for b in self.batches}
        try:
            found = self.harness.workflow_statuses(list(ids))
        except Exception:  # DBOS's tables do not exist yet
            found = []
        statuses = {ids[wf.workflow_id]: wf.status for wf in found}
        return {b.batch_id: statuses.get(b.batch_id, "NOT SUBMITTED") for b in self.batches}


_EXPECTED_ENDING: dict[str, tuple[str, ...]] = {
    "crash": ("SIGKILL by the failpoint",),
    "startup-fails": ("SIGKILL by the failpoint", "exit 1"),
    "submit-fails": ("publish failed",),
    "settled": ("settled",),
    "killed": ("SIGKILL by the lab",),
}


def _counter(kind: str, key: str, value: int, expected: Counter[str]) -> dict[str, Any]:
    return {"kind": kind, "key": key, "value": value, "expected": expected[key]}


def _fired(records: list[dict[str, Any]], process: str) -> list[dict[str, Any]]:
    return [
        {
            "process": process,
            "failpoint": r.get("failpoint"),
            "action": r.get("action"),
            "workflow_id": r.get("workflow_id"),
            "step_id": r.get("step_id"),
        }
        for r in records
        if r.get("event") == "failpoint_fired" and r.get("action") != "delay"  # pacing, not faults
    ]
