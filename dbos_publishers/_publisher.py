"""The Publisher base class: a DBOS configured instance that fans a batch out to a queue and
records every chunk exactly once, counters and ledger in one datasource transaction.

The seam for subclasses: typed `Options` (validated at start), `open`/`close` (once per process),
`deliver` (a side effect outside the database, its own retried step before the transaction),
`bodies` (message bodies; `body` per message behind it) and `write_chunk` (more rows in the chunk
transaction). The replay paths of earlier releases live in _replay, the wire types in _wire.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from itertools import islice
from typing import ClassVar

import pydantic
import sqlalchemy as sa
import structlog
from dbos import DBOS, DBOSConfiguredInstance, SQLAlchemyDatasource, StepOptions
from dbos import error as dbos_error

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers import _failpoints as failpoints
from dbos_publishers import _metrics as metrics
from dbos_publishers import _queues as queues
from dbos_publishers._config import ConfigError
from dbos_publishers._dbos_gateway import DatasourceOptions, IsolationLevel
from dbos_publishers._failpoints import FailpointError, TransientFailpointError, failpoint
from dbos_publishers._hooks import awaited
from dbos_publishers._ids import chunk_workflow_id
from dbos_publishers._options import (
    DeliveryOptions,
    PublisherNotOpenError,
    PublisherOptions,
    RetryPolicy,
    describe_invalid,
)
from dbos_publishers._replay import FAN_OUT_WINDOW, RESULT_POLL_SEC, EarlierReleases
from dbos_publishers._wire import (
    FAN_OUT_WINDOWS,
    BatchPlan,
    BatchRequest,
    BatchSummary,
    ChunkOutcome,
    ChunkSpec,
    plan_chunks,
    planned_chunk_size,
)
from dbos_publishers.store import _batch_records as batch_records
from dbos_publishers.store import _ledger as ledger
from dbos_publishers.store._batch_records import BatchCancelledError, PlannedBatch
from dbos_publishers.store._ledger import ChunkEntries, LedgerEntry

log = structlog.get_logger()

# Registered names: the system database stores these, so they must not change between releases.
PUBLISHER_CLASS_NAME = "Publisher"
BATCH_WORKFLOW = "publish_batch"
CHUNK_WORKFLOW = "publish_chunk"
# How many times DBOS may start a workflow (first run and recoveries) before it ends it as
# MAX_RECOVERY_ATTEMPTS_EXCEEDED, dead and visible in `status`. Set, not DBOS's silent 100:
# a chunk started 25 times without finishing is poison (it kills its worker each time), while a
# batch only waits on its chunks and lives through every crash of a long run.
CHUNK_RECOVERY_ATTEMPTS = 25
BATCH_RECOVERY_ATTEMPTS = 10_000
DELIVERY_STEP = "deliver"
PLAN_STEP = "plan_batch"
FINISH_STEP = "record_finished"  # the batch's end and its `finished` event (batch list, inspect)
PLANNING = "planning"  # marks the session of a plan_batch transaction
TRANSIENT_ATTEMPTS = 5
# A chunk transaction ended by one of its bounds (_connections.TransactionBounds): a lock wait
# (55P03) or a statement (57014) that took too long. DBOS's datasource does not retry these, so
# the attempt ends as its own recorded step and the next attempt is a new step.
BOUND_SQLSTATES = frozenset({"55P03", "57014"})
# A chunk whose batch was cancelled (its transaction rolled back) waits, durably, for DBOS's
# cancel to stop it or a resume to let it commit: 1 s, doubling, at most a minute per wait.
HELD_FIRST_SEC = 1.0
HELD_MAX_SEC = 60.0
# A batch reads which of its window's chunks are still running, then sleeps half the time the
# rest would take at the pace of the last interval (while none ended, half as long again as the
# last sleep), at least RESULT_POLL_SEC, at most RESULT_POLL_MAX_SEC: a window is read four
# times a second while its chunks wait or run, more often only near its end, which is seen
# within about RESULT_POLL_SEC of its last chunk, at worst RESULT_POLL_MAX_SEC (a pace read off
# the first few chunks can be far off, and a small window queued behind other batches can run
# whole within one sleep).
RESULT_POLL_MAX_SEC = 0.25
RESULT_POLL_BACKOFF = 1.5
AWAIT_STEP = "await_chunks"
ENQUEUE_STEP = "enqueue_chunks"

failpoints.declare(
    "effect.after_send", "after a side effect was delivered, before its step is checkpointed"
)


def poll_delay(interval: float, ended: int, pending: int, last: float) -> float:
    """How long a batch sleeps before it reads its window again, given the `interval` since its
    previous read, the chunks that `ended` in it, those still `pending` and the `last` sleep:
    half of what the pending ones would take at that pace, or, if none ended, the last sleep
    half as long again; bounded by RESULT_POLL_SEC and RESULT_POLL_MAX_SEC."""
    wanted = interval * pending / ended / 2 if ended else last * RESULT_POLL_BACKOFF
    return min(RESULT_POLL_MAX_SEC, max(RESULT_POLL_SEC, wanted))


@DBOS.dbos_class(PUBLISHER_CLASS_NAME)
class Publisher(EarlierReleases, DBOSConfiguredInstance):
    """Subclass and override the hooks below; the workflows themselves live here and keep their
    registered names, so every subclass is recovered the same way."""

    Options: ClassVar[type[PublisherOptions]] = PublisherOptions
    # The `deliver` step's retries; a DeliveryOptions `delivery_retry` option overrides it.
    delivery_retry: ClassVar[RetryPolicy] = RetryPolicy()

    def __init__(
        self,
        name: str,
        *,
        datasource: SQLAlchemyDatasource,
        chunk_size: int,
        isolation_level: IsolationLevel,
        options: Mapping[str, object] | None = None,
        chunk_slots: threading.Semaphore | None = None,
    ) -> None:
        self.name = name
        # The worker's chunk transaction slots, shared by its publishers (None: ungated).
        self.chunk_slots = chunk_slots
        self.chunk_size = chunk_size
        self.options: PublisherOptions = type(self).validate_options(options or {})
        self.datasource = datasource
        self.tx_options: DatasourceOptions = {
            "name": "record_chunk",
            "isolation_level": isolation_level,
        }
        super().__init__(name)

    @classmethod
    def validate_options(cls, options: Mapping[str, object]) -> PublisherOptions:
        """The options as this class's `Options` model, or a one-line ConfigError naming the
        first bad one."""
        if options and not cls.Options.model_fields:
            raise ConfigError(
                f"{cls.__name__} takes no options (got: {', '.join(sorted(options))})"
            )
        try:
            return cls.Options.model_validate(dict(options))
        except pydantic.ValidationError as exc:
            raise ConfigError(describe_invalid(cls.__name__, cls.Options, exc)) from None

    # ---- hooks for subclasses -------------------------------------------------------------

    # `open`, `close` and `deliver` may be `async def`: the framework awaits them, all on the
    # process's one event loop (see _hooks), so an asyncio client lives on the loop it was
    # opened on. Every other hook is a plain def.

    def open(self) -> Awaitable[None] | None:
        """Open clients this publisher needs; called once per process, before DBOS.launch()."""
        return None

    def close(self) -> Awaitable[None] | None:
        """Close what `open` opened; called once at shutdown, after DBOS stopped running work."""
        return None

    def deliver(self, chunk: ChunkSpec, entries: Sequence[LedgerEntry]) -> Awaitable[None] | None:
        """Send the chunk's messages to a system outside the database (nothing by default).

        Runs as its own DBOS step before the chunk transaction, retried by `delivery_retry`, and
        only for classes that override it; an `async def deliver` is awaited to its end within
        the step. At least once: a crash after a delivery and before its step is checkpointed
        delivers again, so let the receiver deduplicate by message id.
        """
        return None

    @property
    def delivery_policy(self) -> RetryPolicy:
        """The `deliver` step's retries: the `delivery_retry` option, else the class's."""
        if isinstance(self.options, DeliveryOptions) and self.options.delivery_retry is not None:
            return self.options.delivery_retry
        return self.delivery_retry

    def should_retry_delivery(self, error: BaseException) -> bool:
        """Whether a failed `deliver` is worth another attempt; not for a permanent failpoint
        error or a publisher that was never opened."""
        if isinstance(error, TransientFailpointError):
            return True
        return not isinstance(error, FailpointError | PublisherNotOpenError)

    def bodies(self, chunk: ChunkSpec) -> Sequence[str]:
        """The bodies of a chunk's messages, in order: the messages given with the batch, else
        `body` per position. Must be deterministic: a replayed chunk makes them again."""
        if chunk["messages"] is not None:
            return chunk["messages"]
        start = chunk["start"]
        return [self.body(chunk, position) for position in range(start, start + chunk["count"])]

    def body(self, chunk: ChunkSpec, position: int) -> str:
        """The body of message `position` (0-based) of a batch given by count."""
        return f"{chunk['topic']}#{position}"

    def write_chunk(self, entries: Sequence[LedgerEntry]) -> int:
        """Runs inside the chunk transaction: ledger rows and both counters, atomically."""
        conn = self.datasource.sql_session().connection()
        return ledger.record_chunk(conn, entries)

    def _commit_chunk(self, entries: Sequence[LedgerEntry]) -> int:
        """Run `write_chunk` as one exactly-once datasource transaction (a checkpointed step)."""
        return self.datasource.run_tx_step(self.tx_options, self._chunk_transaction, entries)

    # ---- workflows ------------------------------------------------------------------------

    @DBOS.workflow(name=BATCH_WORKFLOW, max_recovery_attempts=BATCH_RECOVERY_ATTEMPTS)
    def publish_batch(self, request: BatchRequest) -> BatchSummary:
        with structlog.contextvars.bound_contextvars(publisher=self.name):
            failpoint("batch.start")
            log.info("batch_started", batch_id=request["batch_id"], messages=request["count"])
            # Config may change between a crash and the restart; the plan must not. The step is
            # a datasource transaction that also records the batch (its total, its state); a
            # batch planned by an earlier release replays the plain step recorded under this name.
            plan: BatchPlan | int = self.datasource.run_tx_step(
                {"name": PLAN_STEP, "isolation_level": self.tx_options["isolation_level"]},
                self._plan_batch,
                request,
            )
            summary = self._fan_out_fan_in(request, plan)
            self.datasource.run_tx_step(
                {"name": FINISH_STEP, "isolation_level": self.tx_options["isolation_level"]},
                self._record_finished,
                summary,
            )
            failpoint("batch.before_complete")
            log.info(
                "batch_finished",
                batch_id=request["batch_id"],
                published=summary["published"],
                failed=summary["failed"],
            )
            return summary

    @DBOS.workflow(name=CHUNK_WORKFLOW, max_recovery_attempts=CHUNK_RECOVERY_ATTEMPTS)
    def publish_chunk(self, chunk: ChunkSpec) -> ChunkOutcome:
        with structlog.contextvars.bound_contextvars(publisher=self.name):
            failpoint("chunk.start")
            workflow_id = chunk_workflow_id(chunk["batch_id"], chunk["index"])
            entries = self._entries(chunk, workflow_id)
            with metrics.CHUNK_SECONDS.labels(self.name).time():  # timing only, never control flow
                if self._delivers():
                    # Outside the commit retries: a retried commit must not deliver again.
                    with self._slot():
                        DBOS.run_step(self._delivery_step(), self._delivery, chunk, entries)
                published = self._commit_unless_cancelled(entries)
            log.debug("chunk_published", batch_id=chunk["batch_id"], chunk=chunk["index"])
            return ChunkOutcome(
                index=chunk["index"],
                workflow_id=workflow_id,
                messages=chunk["count"],
                published=published,
                error=None,
            )

    # ---- internals ------------------------------------------------------------------------

    def _plan_batch(self, request: BatchRequest) -> BatchPlan | int:
        session = self.datasource.sql_session()
        session.info[PLANNING] = True  # its commit is no chunk's: `chunk.after_commit` skips it
        conn = session.connection()
        _no_wait_bounds(conn)
        batch_records.record_batch(
            conn,
            PlannedBatch(
                batch_id=request["batch_id"],
                publisher=self.name,
                topic=request["topic"],
                messages=request["count"],
                chunk_size=self.chunk_size,
            ),
        )
        return self._planned()

    def _record_finished(self, summary: BatchSummary) -> None:
        session = self.datasource.sql_session()
        session.info[PLANNING] = True  # no chunk's commit either
        conn = session.connection()
        _no_wait_bounds(conn)
        batch_records.record_finished(
            conn, summary["batch_id"], summary["published"], summary["failed"]
        )

    def _planned(self) -> BatchPlan | int:
        """The plan step's recorded output (see FAN_OUT_WINDOWS)."""
        return BatchPlan(chunk_size=self.chunk_size, fan_out=FAN_OUT_WINDOWS)

    def _slot(self) -> AbstractContextManager[object]:
        """One of the worker's chunk transaction slots, held for a delivery or a commit attempt
        (never across a held chunk's sleep): chunk_concurrency of them, while DBOS runs
        `[queues] chunk_prefetch` times as many chunk workflows, the others built and waiting."""
        return self.chunk_slots if self.chunk_slots is not None else nullcontext()

    def _delivers(self) -> bool:
        return type(self).deliver is not Publisher.deliver

    def _delivery_step(self) -> StepOptions:
        policy = self.delivery_policy
        return {
            "name": DELIVERY_STEP,
            "retries_allowed": True,
            "max_attempts": policy.max_attempts,
            "interval_seconds": policy.interval_seconds,
            "backoff_rate": policy.backoff_rate,
            "should_retry": self.should_retry_delivery,
        }

    def _delivery(self, chunk: ChunkSpec, entries: Sequence[LedgerEntry]) -> int:
        metrics.DELIVER_ATTEMPTS.labels(self.name).inc()
        with metrics.DELIVER_FAILURES.labels(self.name).count_exceptions():
            awaited(self.deliver(chunk, entries))  # an async def deliver ends before the failpoint
        failpoint("effect.after_send")
        return len(entries)  # a step's recorded output; None would not replay

    def _fan_out_fan_in(self, request: BatchRequest, plan: BatchPlan | int) -> BatchSummary:
        """Enqueue the batch's chunks and sum up their outcomes, window by window; a batch
        planned by an earlier release replays its fan-out (see FAN_OUT_WINDOWS)."""
        summary = self._empty_summary(request)
        if isinstance(plan, int):
            self._fan_out_fan_in_marked(request, plan, summary)
        else:
            self._fan_out_windows(request, planned_chunk_size(plan), summary, in_one_step=True)
        return summary

    def _empty_summary(self, request: BatchRequest) -> BatchSummary:
        return BatchSummary(
            batch_id=request["batch_id"],
            publisher=self.name,
            topic=request["topic"],
            messages=request["count"],
            published=0,
            failed=0,
            chunks=0,
            failed_chunks=[],
        )

    def _fan_out_windows(
        self, request: BatchRequest, chunk_size: int, summary: BatchSummary, *, in_one_step: bool
    ) -> None:
        """Enqueue chunks (a window per step, or one by one) and collect their outcomes window
        by window, so a batch of any size holds at most two windows of chunk specs and a
        summary of its failures."""
        chunks = plan_chunks(request, chunk_size)
        waiting: list[ChunkSpec] = []
        # The next window is enqueued before the previous one is awaited: the queue never drains.
        while window := list(islice(chunks, FAN_OUT_WINDOW)):
            if in_one_step:
                DBOS.run_step({"name": ENQUEUE_STEP}, self._enqueue_window, window)
            else:
                self._enqueue(window)
            if waiting:
                self._collect_window(summary, waiting)
            waiting = window
        if waiting:
            self._collect_window(summary, waiting)

    def _enqueue_window(self, window: list[ChunkSpec]) -> int:
        """The window's chunk workflows, under their deterministic ids, in one transaction;
        run again after a crash it finds them all and adds none."""
        calls = [(chunk_workflow_id(c["batch_id"], c["index"]), (c,)) for c in window]
        dbos_gateway.enqueue_children(self.publish_chunk, calls, queues.CHUNK_QUEUE)
        for _ in window:  # `@N` counts chunks enqueued, whichever way
            failpoint("fanout.after_enqueue")
        return len(window)  # a step's recorded output; None would not replay

    def _collect_window(self, summary: BatchSummary, window: list[ChunkSpec]) -> None:
        outcomes: list[ChunkOutcome] = DBOS.run_step(
            {"name": AWAIT_STEP}, self._await_chunks, window
        )
        for outcome in outcomes:
            self._count(summary, outcome)

    def _await_chunks(self, window: list[ChunkSpec]) -> list[ChunkOutcome]:
        """Wait until every chunk of the window ended (see RESULT_POLL_SEC), then read all
        outcomes in one query."""
        ids = [chunk_workflow_id(c["batch_id"], c["index"]) for c in window]
        pending, read_at, delay = ids, time.monotonic(), RESULT_POLL_SEC
        while still := dbos_gateway.still_active(pending):
            now = time.monotonic()
            delay = poll_delay(now - read_at, len(pending) - len(still), len(still), delay)
            pending, read_at = still, now
            time.sleep(delay)
        ended = dbos_gateway.ended_results(ids)
        return [
            self._outcome(chunk, wf_id, ended[wf_id])
            for chunk, wf_id in zip(window, ids, strict=True)
        ]

    def _outcome(
        self, chunk: ChunkSpec, workflow_id: str, result: ChunkOutcome | Exception
    ) -> ChunkOutcome:
        if not isinstance(result, Exception):
            return result
        if isinstance(result, dbos_error.DBOSAwaitedWorkflowCancelledError):
            log.info("chunk_cancelled", chunk=chunk["index"])  # someone chose it: not an error
        else:
            log.error("chunk_failed", chunk=chunk["index"], error=str(result))
        return ChunkOutcome(
            index=chunk["index"],
            workflow_id=workflow_id,
            messages=chunk["count"],
            published=0,
            error=_failure(result),
        )

    def _count(self, summary: BatchSummary, outcome: ChunkOutcome) -> None:
        summary["chunks"] += 1
        summary["published"] += outcome["published"]
        summary["failed"] += outcome["messages"] - outcome["published"]
        if outcome["error"] is not None:
            summary["failed_chunks"].append(outcome)
        failpoint("fanin.after_result")

    def _entries(self, chunk: ChunkSpec, workflow_id: str) -> ChunkEntries:
        return ChunkEntries(
            batch_id=chunk["batch_id"],
            publisher=self.name,
            topic=chunk["topic"],
            chunk_workflow_id=workflow_id,
            start=chunk["start"],
            payloads=self.bodies(chunk),
        )

    def _commit_unless_cancelled(self, entries: Sequence[LedgerEntry]) -> int:
        """Commit, or, while the batch is cancelled, wait and try again (each wait and attempt
        its own step, so a replay walks them). Step-compatible with pending work of a release
        before cancel existed: its recorded commits never raised BatchCancelledError."""
        wait = HELD_FIRST_SEC
        while True:
            try:
                return self._commit_with_retries(entries)
            except BatchCancelledError:
                log.info("chunk_held", batch_id=entries[0].batch_id, wait_sec=wait)
                DBOS.sleep(wait)
                wait = min(wait * 2, HELD_MAX_SEC)

    def _commit_with_retries(self, entries: Sequence[LedgerEntry]) -> int:
        # Each attempt is its own checkpointed step, so a replay walks the same attempts.
        for attempt in range(1, TRANSIENT_ATTEMPTS + 1):
            try:
                with self._slot():
                    return self._commit_chunk(entries)
            except (TransientFailpointError, ChunkBoundError) as exc:
                if attempt == TRANSIENT_ATTEMPTS:
                    raise
                log.warning("chunk_retry", attempt=attempt, error=str(exc))
        raise AssertionError("unreachable")

    def _chunk_transaction(self, entries: Sequence[LedgerEntry]) -> int:
        conn = self.datasource.sql_session().connection()
        try:
            batch_records.require_active(
                conn, entries[0].batch_id, self.tx_options["isolation_level"] or "SERIALIZABLE"
            )
            published = self.write_chunk(entries)
        except sa.exc.OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) not in BOUND_SQLSTATES:
                raise
            raise ChunkBoundError(str(exc.orig).splitlines()[0]) from None
        failpoint("chunk.before_commit")
        return published


NO_WAIT_BOUNDS = sa.text(
    "SELECT set_config('lock_timeout', '0', true), set_config('statement_timeout', '0', true)"
)


def _no_wait_bounds(conn: sa.Connection) -> None:
    """The batch's own steps (plan, finish) wait as long as a lock takes: no retry loop wraps
    them, so a lock or statement bound meant for chunks would end the batch workflow instead."""
    if conn.dialect.name == "postgresql":
        conn.execute(NO_WAIT_BOUNDS)


class ChunkBoundError(RuntimeError):
    """A chunk transaction waited on a lock, or ran a statement, longer than its bound."""


def _failure(exc: Exception) -> str:
    """How a chunk failed; for a delivery that ran out of attempts, also why the last one did."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, dbos_error.DBOSMaxStepRetriesExceeded) and exc.errors:
        last = exc.errors[-1]
        text += f" (last: {type(last).__name__}: {last})"
    return text
