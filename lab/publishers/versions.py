"""Publisher classes for the deploy scenarios (`upgrade/*`): version N and the version N+1 that
replaces it while N's work is still pending. Lab classes, declared only by the scenarios.

A subclass is recovered as its base is: DBOS records the registered class name (`Publisher`,
inherited) and the instance name, never the Python class, so N+1 finds N's workflows.

- compatible: N+1 (`LoggingEventPublisher`) logs every chunk and takes a new option with a
  default; the chunk workflow's steps are unchanged, so the same APP_VERSION replays N's work.
- patched: N (`ValidatedEventPublisher`) validates each chunk in a step, then commits it; N+1
  (`MeasuredEventPublisher`) first measures the chunk in a new step, behind `DBOS.patch`.
- fan-in: N (`PerChunkFanInPublisher`) is the release before `await-chunk-windows`, whose
  batches collected each chunk in its own DBOS.getResult step; N+1 (`LoggingEventPublisher`, the
  current base) replays those batches that way. `UnguardedFanInPublisher` drops the patch.
- fan-out: N (`PerChunkEnqueuePublisher`) is the release before `enqueue-chunk-windows`, whose
  batches enqueued each chunk from the workflow; N+1 (`LoggingEventPublisher`) replays those
  batches that way. `UnguardedFanOutPublisher` drops the patch.
- plan-fan-out: N (`PatchMarkedPublisher`) is the release before plans named their fan-out,
  whose batches recorded a bare chunk size and both patch markers; N+1 (`LoggingEventPublisher`)
  replays those batches through their markers. `UnmarkedPlanPublisher` reads only the plan.
- broken: `PatchBeforeCommitPublisher` puts that patch directly before the chunk transaction,
  which shifts the transaction's step id for a chunk that committed on N just before the crash.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import structlog
from dbos import DBOS

from dbos_publishers._options import PublisherOptions
from dbos_publishers._wire import BatchPlan, BatchRequest, BatchSummary, planned_chunk_size
from dbos_publishers.contrib.events import EventPublisher
from dbos_publishers.store._ledger import LedgerEntry

log = structlog.get_logger()

VALIDATE_STEP = "validate_chunk"
MEASURE_STEP = "measure_chunk"
MEASURE_PATCH = "measure-chunk"  # DBOS records the marker as "DBOS.patch-measure-chunk"
MAX_MESSAGE_BYTES = 64 * 1024


class LoggingOptions(PublisherOptions):
    log_chunks: bool = True  # new in N+1; the default keeps N's publishers file valid


class LoggingEventPublisher(EventPublisher):
    """N+1 of `upgrade/compatible`: one log line per chunk written, inside its transaction (no
    new step), switched by a new option."""

    Options = LoggingOptions
    options: LoggingOptions

    def write_chunk(self, entries: Sequence[LedgerEntry]) -> int:
        if self.options.log_chunks:
            log.info("chunk_written", first=entries[0].message_id, messages=len(entries))
        return super().write_chunk(entries)


class ValidatedEventPublisher(EventPublisher):
    """N of `upgrade/patched`: a `validate_chunk` step, then the chunk transaction."""

    def _commit_chunk(self, entries: Sequence[LedgerEntry]) -> int:
        DBOS.run_step({"name": VALIDATE_STEP}, self._validate, entries)
        return self._record(entries)

    def _record(self, entries: Sequence[LedgerEntry]) -> int:
        return super()._commit_chunk(entries)

    def _validate(self, entries: Sequence[LedgerEntry]) -> int:
        for entry in entries:
            json.loads(entry.payload)  # each message is a JSON event
            if len(entry.payload) > MAX_MESSAGE_BYTES:
                raise ValueError(f"message {entry.message_id} is over {MAX_MESSAGE_BYTES} bytes")
        return len(entries)

    def _measure(self, entries: Sequence[LedgerEntry]) -> int:
        size = sum(len(entry.payload) for entry in entries)
        log.info("chunk_measured", first=entries[0].message_id, bytes=size)
        return size


class MeasuredEventPublisher(ValidatedEventPublisher):
    """N+1 of `upgrade/patched`: a `measure_chunk` step before everything else, behind a patch.

    A chunk with a step recorded where the patch stands (it had validated on N) replays the old
    path; one with none takes the new path. The patch precedes `validate_chunk`, a plain step, so
    no transaction moves to another step id."""

    def _commit_chunk(self, entries: Sequence[LedgerEntry]) -> int:
        if DBOS.patch(MEASURE_PATCH):
            DBOS.run_step({"name": MEASURE_STEP}, self._measure, entries)
        return super()._commit_chunk(entries)


class PatchBeforeCommitPublisher(ValidatedEventPublisher):
    """Broken N+1: the patch sits directly before the chunk transaction. A chunk whose
    transaction committed on N, but whose step DBOS had not yet recorded when N died, has no
    record where the patch stands: it takes the new path, its transaction gets a later step id,
    finds no result recorded under it and runs again, and the ledger refuses the repeat."""

    def _record(self, entries: Sequence[LedgerEntry]) -> int:
        if DBOS.patch(MEASURE_PATCH):
            DBOS.run_step({"name": MEASURE_STEP}, self._measure, entries)
        return super()._record(entries)


class PerChunkFanInPublisher(EventPublisher):
    """N of `upgrade/fan-in`: the release before `await-chunk-windows`, no patch and a
    DBOS.getResult step per chunk (the steps its pending batches have recorded)."""

    def _planned(self) -> int:
        return self.chunk_size  # as every release before plans named their fan-out

    def _fan_out_fan_in(self, request: BatchRequest, plan: BatchPlan | int) -> BatchSummary:
        summary = self._empty_summary(request)
        self._fan_out_fan_in_per_chunk(request, planned_chunk_size(plan), summary)
        return summary


class UnguardedFanInPublisher(LoggingEventPublisher):
    """Broken N+1 of `upgrade/fan-in`: the window fan-in without its DBOS.patch, so a batch
    that started on N meets an await_chunks step where N recorded a DBOS.getResult."""

    def _fan_out_fan_in(self, request: BatchRequest, plan: BatchPlan | int) -> BatchSummary:
        summary = self._empty_summary(request)
        chunk_size = planned_chunk_size(plan)
        self._fan_out_windows(request, chunk_size, summary, in_one_step=self._enqueues_windows())
        return summary


class PerChunkEnqueuePublisher(EventPublisher):
    """N of `upgrade/fan-out`: the release before `enqueue-chunk-windows`, no patch and a child
    enqueue per chunk from the batch workflow (the steps its pending batches have recorded)."""

    def _planned(self) -> int:
        return self.chunk_size

    def _enqueues_windows(self) -> bool:
        return False


class UnguardedFanOutPublisher(LoggingEventPublisher):
    """Broken N+1 of `upgrade/fan-out`: the window enqueue without its DBOS.patch, so a batch
    that started on N meets an enqueue_chunks step where N recorded a child enqueue."""

    def _enqueues_windows(self) -> bool:
        return True


class PatchMarkedPublisher(EventPublisher):
    """N of `upgrade/plan-fan-out`: the release before plans named their fan-out, whose batches
    recorded a bare chunk size, then both patch markers before their first window."""

    def _planned(self) -> int:
        return self.chunk_size


class UnmarkedPlanPublisher(LoggingEventPublisher):
    """Broken N+1 of `upgrade/plan-fan-out`: every batch fans out by windows, as if its plan
    named it, so a batch that started on N meets an enqueue_chunks step where N recorded its
    first patch marker."""

    def _fan_out_fan_in(self, request: BatchRequest, plan: BatchPlan | int) -> BatchSummary:
        summary = self._empty_summary(request)
        self._fan_out_windows(request, planned_chunk_size(plan), summary, in_one_step=True)
        return summary
