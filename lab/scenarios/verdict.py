"""A scenario's verdict: nothing lost, nothing duplicated, nothing stranded, counters exact, no
step that had committed ran again, side effects applied once (the lab's half that judges)."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

from dbos_publishers._ids import chunk_workflow_id
from dbos_publishers._wire import BatchRequest, plan_chunks
from dbos_publishers.store._invariants import more_missing_ids
from lab.scenarios.catalog import Batch, Scenario
from lab.scenarios.harness import ServiceHarness
from lab.scenarios.outages import Outages
from lab.scenarios.receiver import Receiver
from lab.scenarios.report import Effects, ScenarioReport, StepRef


class Verdict:
    """Mixed into the lab: reads both databases and the workers' logs into the report."""

    scenario: Scenario
    harness: ServiceHarness
    crew: list[ServiceHarness]
    receiver: Receiver | None
    batches: list[Batch]
    report: ScenarioReport
    outages: Outages

    def _active(self) -> list[str]:
        raise NotImplementedError

    def _batch_statuses(self) -> dict[str, str]:
        raise NotImplementedError

    def collect(self, restarted_at: float) -> None:
        """The verdict; read again from the start if a database outage interrupts it."""
        before = copy.deepcopy(self.report)

        def attempt() -> None:
            self.report = copy.deepcopy(before)
            self._collect(restarted_at)

        self.outages.retry(attempt)

    def _collect(self, restarted_at: float) -> None:
        report = self.report
        self._collect_ledger()
        left = self.harness.active_workflow_statuses()
        report.stranded = [wf.workflow_id for wf in left]
        if left:
            where = Counter(f"{wf.status} on {wf.executor_id}" for wf in left)
            report.violations.append(
                f"{len(left)} workflows left PENDING or ENQUEUED ("
                + ", ".join(f"{n} {state}" for state, n in sorted(where.items()))
                + ")"
            )
        statuses = self._batch_statuses()
        report.unfinished = {b: s for b, s in statuses.items() if s not in self._finished}
        for batch_id, status in report.unfinished.items():
            report.violations.append(f"batch {batch_id} ended {status}")
        if self.scenario.outcome == "complete":
            self._collect_summaries()
        self._collect_steps(restarted_at)
        self._collect_effects()

    def _collect_summaries(self) -> None:
        """Every batch's own summary agrees: no chunk reported failed. (A chunk that ran its
        committed transaction again ends in ERROR on the ledger's primary key while its
        messages are in, so the ledger checks alone would pass.)"""
        for batch in self.batches:
            _, summary = self.harness.batch_outcome(batch.batch_id)
            if summary and summary["failed"]:
                chunk = summary["failed_chunks"][0]
                self.report.violations.append(
                    f"batch {batch.batch_id}: its summary reports {summary['failed']} of "
                    f"{batch.count} messages failed ({chunk['workflow_id']}: "
                    f"{str(chunk['error']).splitlines()[0][:160]})"
                )

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
            for worker in self.crew
            for r in worker.all_records()
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


def _counter(kind: str, key: str, value: int, expected: Counter[str]) -> dict[str, Any]:
    return {"kind": kind, "key": key, "value": value, "expected": expected[key]}
