"""Replay paths of batches an earlier release started: while such a batch is PENDING, the code
that recorded its steps must still be here to replay them. Kept out of the class a publisher
author reads; exercised by the `upgrade/*` scenarios (lab/publishers/versions.py holds those
releases' publishers).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from dbos import DBOS, SetWorkflowID

from dbos_publishers import _queues as queues
from dbos_publishers._failpoints import failpoint
from dbos_publishers._ids import chunk_workflow_id
from dbos_publishers._wire import BatchRequest, BatchSummary, ChunkOutcome, ChunkSpec, plan_chunks

# Batches that recorded their first chunk enqueue before this release collect each chunk with
# its own DBOS.getResult step; the others wait for a whole window in one AWAIT_STEP.
AWAIT_PATCH = "await-chunk-windows"
# Batches that enqueued their first chunk from the workflow itself (a child enqueue per chunk)
# go on that way; the others enqueue each window in one ENQUEUE_STEP, one transaction.
ENQUEUE_PATCH = "enqueue-chunk-windows"
FAN_OUT_WINDOW = 512  # chunks a batch enqueues before it waits for the previous window
RESULT_POLL_SEC = 0.05  # DBOS polls a child's status once a second by default


class EarlierReleases:
    """The fan-out and fan-in of earlier releases, mixed into Publisher."""

    if TYPE_CHECKING:  # what Publisher provides

        def publish_chunk(self, chunk: ChunkSpec) -> ChunkOutcome: ...

        def _fan_out_windows(
            self,
            request: BatchRequest,
            chunk_size: int,
            summary: BatchSummary,
            *,
            in_one_step: bool,
        ) -> None: ...

        def _count(self, summary: BatchSummary, outcome: ChunkOutcome) -> None: ...

        def _outcome(
            self, chunk: ChunkSpec, workflow_id: str, result: ChunkOutcome | Exception
        ) -> ChunkOutcome: ...

    def _fan_out_fan_in_marked(
        self, request: BatchRequest, chunk_size: int, summary: BatchSummary
    ) -> None:
        """An earlier release's batch: its patch markers (recorded, or recorded now if it
        stopped before them) say whether it collects per chunk (see AWAIT_PATCH) and enqueues
        per chunk (see ENQUEUE_PATCH)."""
        if DBOS.patch(AWAIT_PATCH):
            self._fan_out_windows(
                request, chunk_size, summary, in_one_step=self._enqueues_windows()
            )
        else:
            self._fan_out_fan_in_per_chunk(request, chunk_size, summary)

    def _enqueues_windows(self) -> bool:
        """Whether an earlier release's batch enqueues a window per step (see ENQUEUE_PATCH)."""
        return DBOS.patch(ENQUEUE_PATCH)

    def _enqueue(self, window: list[ChunkSpec]) -> None:
        for chunk in window:
            self._enqueue_chunk(chunk)

    def _enqueue_chunk(self, chunk: ChunkSpec) -> Any:
        """Enqueue one chunk workflow under its deterministic id; its handle."""
        with SetWorkflowID(chunk_workflow_id(chunk["batch_id"], chunk["index"])):
            handle = queues.chunk_queue().enqueue(self.publish_chunk, chunk)
        failpoint("fanout.after_enqueue")
        return handle

    def _fan_out_fan_in_per_chunk(
        self, request: BatchRequest, chunk_size: int, summary: BatchSummary
    ) -> None:
        """The previous release's fan-in, a DBOS.getResult step per chunk through a sliding
        window of handles: replayed by batches that started on it (see AWAIT_PATCH)."""
        window: deque[tuple[ChunkSpec, Any]] = deque()
        for chunk in plan_chunks(request, chunk_size):
            if len(window) >= FAN_OUT_WINDOW:
                self._count(summary, self._chunk_result(*window.popleft()))
            window.append((chunk, self._enqueue_chunk(chunk)))
        while window:
            self._count(summary, self._chunk_result(*window.popleft()))

    def _chunk_result(self, chunk: ChunkSpec, handle: Any) -> ChunkOutcome:
        try:
            outcome: ChunkOutcome = handle.get_result(polling_interval_sec=RESULT_POLL_SEC)
            return outcome
        except Exception as exc:  # a chunk that failed for good is reported, not re-raised
            return self._outcome(chunk, handle.workflow_id, exc)
