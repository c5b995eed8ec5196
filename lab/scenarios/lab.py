"""One scenario's lab (the service, fault runs, the restart, the reads the verdict needs), apart
from the runner so that the scenario kinds and the runner that picks one both import it."""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from dbos import WorkflowStatus

from dbos_publishers._dbos_gateway import TERMINAL_STATUSES
from dbos_publishers._ids import batch_workflow_id
from lab.scenarios import chaos
from lab.scenarios.catalog import Batch, Fault, Scenario, plan_batches
from lab.scenarios.cluster import Cluster
from lab.scenarios.harness import HarnessError, ScenarioBackend, ServiceHarness, json_records
from lab.scenarios.netns import Namespace
from lab.scenarios.outages import Outages
from lab.scenarios.progress import Progress
from lab.scenarios.receiver import Receiver
from lab.scenarios.report import FaultRun, ScenarioReport
from lab.scenarios.session_watch import SessionWatch
from lab.scenarios.verdict import Verdict

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
FAULT_TIMEOUT_SEC = 120  # a planned fault that has not shown itself by then never will
FINISH_TIMEOUT_SEC = 600
POLL_SEC = 0.02
EXIT_BAD_INPUT = 2  # the CLI's exit code for bad input and unreachable databases
# Short leases, so an expiry-based takeover (the zombie) happens in seconds, not the default 10.
LAB_LEASES = {"APP_HEARTBEAT_SEC": "0.5", "APP_LEASE_TTL_SEC": "3"}


@dataclass(frozen=True)
class RunOptions:
    backend: ScenarioBackend = "sqlite"
    messages: int | None = None  # None: the scenario's own size
    seed: int = 0
    kills: int | None = None  # chaos only; None: the scenario's own count
    workers: int | None = None  # None: the scenario's own count (1 but for takeover/*)
    postgres_url: str = DEFAULT_POSTGRES
    stall_sec: float = 20.0  # no progress for this long after the restart: work is stranded
    outage_sec: float = 30.0  # pg/outage: how long Postgres stays down


@dataclass
class Lab(Verdict):
    scenario: Scenario
    options: RunOptions
    harness: ServiceHarness
    receiver: Receiver | None
    progress: Progress
    batches: list[Batch] = field(default_factory=list)
    submitted: bool = False
    report: ScenarioReport = field(init=False)
    outages: Outages = field(default_factory=Outages)
    crew: list[ServiceHarness] = field(default_factory=list)  # every worker; [0] is `harness`
    victims: list[tuple[str, float, set[str]]] = field(
        default_factory=list
    )  # executor, when, its work
    cluster: Cluster | None = None  # pg/*, fleet/partition: the lab's own Postgres server
    netns: Namespace | None = None  # fleet/partition: the cut-off worker's network namespace
    # fleet/*: one per report.stuck_faults entry, its worker's open chunk transactions
    session_watches: list[SessionWatch] = field(default_factory=list)
    http_base: str = ""  # the service's HTTP API, when the scenario probes it

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
        self.report.workers = self.options.workers or self.scenario.workers
        self.crew = [self.harness]
        if self.report.workers > 1:
            self.harness.extra_env.update(LAB_LEASES)
            self.crew += [self._teammate(n) for n in range(1, self.report.workers)]
        self.harness.serve_args = self.scenario.serve

    def _teammate(self, number: int) -> ServiceHarness:
        """Another worker on the same databases and publishers file, with its own logs."""
        workdir = self.harness.workdir / f"worker-{number}"
        workdir.mkdir()
        return ServiceHarness(
            databases=self.harness.databases,
            workdir=workdir,
            publishers_file=self.harness.publishers_file,
            extra_env=self.harness.extra_env,
            serve_args=self.scenario.serve,
        )

    def faults(self) -> tuple[Fault, ...]:
        if not self.scenario.chaos_kills:
            return self.scenario.faults
        return chaos.kill_schedule(
            self.options.kills or self.scenario.chaos_kills, self.options.seed
        )

    def run_faults(self) -> None:
        """The plain kind: each fault run in turn, then the restart without faults."""
        faults = self.faults()
        for number, fault in enumerate(faults, start=1):
            self.progress.update(f"{self.scenario.name}: fault run {number}/{len(faults)}")
            self.faulty_run(fault)
        self.progress.update(f"{self.scenario.name}: restarted without faults")
        self.clean_run()

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
            ledger_rows=self.ledger_rows(),
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
            if all(s in TERMINAL_STATUSES for s in statuses.values()) and not self._active():
                return
            time.sleep(0.1)

    def _kill_at(self, fault: Fault) -> str:
        target = int(fault.kill_at * self.report.messages)
        deadline = time.monotonic() + FAULT_TIMEOUT_SEC
        rows = self.ledger_rows()
        while rows < target and self.harness.running() and time.monotonic() < deadline:
            time.sleep(POLL_SEC)
            rows = self.ledger_rows()
        if not self.harness.running():
            return self._ended()
        time.sleep(fault.kill_delay_sec)
        self.harness.kill()
        return f"SIGKILL by the lab at {rows} ledger rows (planned at {target})"

    def submit(self, failpoints: str = "") -> list[dict[str, Any]]:
        """Publish every batch through the CLI; returns failpoint records of failed publishes."""
        fired: list[dict[str, Any]] = []
        for batch in self.batches:
            done = self._publish(batch, failpoints)
            if done.returncode != 0:
                fired += _fired(json_records(done.stdout + done.stderr), "publish client") or [
                    {"failpoint": "?", "action": f"publish exited {done.returncode}"}
                ]
        self.submitted = not fired
        return fired

    def _publish(self, batch: Batch, failpoints: str) -> subprocess.CompletedProcess[str]:
        """`publish` through the CLI, again while it says the database is unreachable (the
        client's retry; the batch id makes a repeat harmless)."""
        while True:
            done = self.harness.cli(
                *("publish", batch.publisher, "--count", str(batch.count)),
                *("--topic", batch.topic, "--batch-id", batch.batch_id),
                APP_FAILPOINTS=failpoints,
            )
            if done.returncode != EXIT_BAD_INPUT or "cannot reach" not in done.stderr:
                self.outages.recovered()
                return done
            self.outages.failed(done.stderr.strip().removeprefix("error: "))
            time.sleep(0.5)

    # ---- the restart without faults ---------------------------------------------------------

    def clean_run(self) -> None:
        restarted_at = time.time()
        try:
            self._restart()
        except HarnessError as exc:
            first_line = str(exc).splitlines()[0]
            self.report.violations.append(f"the restart without faults failed: {first_line}")
            self.collect(restarted_at)
            return
        # The client's retry: the same batch ids, so nothing is published twice.
        for failed in self.submit():
            self.report.violations.append(f"re-submitting after the restart failed: {failed}")
        self.wait_done()
        self.collect(restarted_at)
        self.harness.stop()

    def _restart(self) -> None:
        self.restart_until_up("")

    def restart_until_up(self, failpoints: str) -> None:
        """Start the service; again while it cannot reach a database (what a supervisor such
        as `docker compose` or systemd does)."""
        while True:
            try:
                self.harness.start(failpoints, env=self.scenario.restart_env)
            except HarnessError:
                reason = self.harness.unreachable_reason()
                if reason is None:
                    raise
                self.outages.failed(reason)
                time.sleep(0.5)
                continue
            self.outages.recovered()
            return

    def wait_done(self) -> None:
        deadline = time.monotonic() + FINISH_TIMEOUT_SEC
        last: tuple[object, ...] = ()
        last_change = time.monotonic()
        while time.monotonic() < deadline:
            statuses = self._batch_statuses()
            active = self._active()
            if all(s in self._finished for s in statuses.values()) and not active:
                return
            rows = self.ledger_rows()
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

    def done(self) -> bool:
        """Every batch finished and no workflow left to run."""
        statuses = self._batch_statuses()
        return all(s in self._finished for s in statuses.values()) and not self._active()

    # ---- reads ------------------------------------------------------------------------------

    def active(self) -> list[str]:
        return self._active()

    def ledger_rows(self) -> int:
        return self.outages.poll(self.harness.ledger_rows, 0)

    def _active(self) -> list[str]:
        return self.outages.poll(self.harness.active_workflows, [])

    def _batch_statuses(self) -> dict[str, str]:
        ids = {batch_workflow_id(b.batch_id): b.batch_id for b in self.batches}
        nothing: list[WorkflowStatus] = []
        found = self.outages.poll(lambda: self.harness.workflow_statuses(list(ids)), nothing)
        statuses = {ids[wf.workflow_id]: wf.status for wf in found}
        return {b.batch_id: statuses.get(b.batch_id, "NOT SUBMITTED") for b in self.batches}


_EXPECTED_ENDING: dict[str, tuple[str, ...]] = {
    "crash": ("SIGKILL by the failpoint",),
    "startup-fails": ("SIGKILL by the failpoint", "exit 1"),
    "submit-fails": ("publish failed",),
    "settled": ("settled",),
    "killed": ("SIGKILL by the lab",),
}


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
