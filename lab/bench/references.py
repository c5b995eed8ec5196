"""The reference rows: the product's chunk work without the framework around it.

`ceiling`: no DBOS at all, N connections each committing one chunk per transaction.
`dbos-raw` / `dbos-raw-per-message`: a plain DBOS workflow per chunk (or message), enqueued
straight from a DBOSClient, running the same datasource transaction; no Publisher workflow, no
batch workflow.

Both build rows and commit them with the product's own code through `commit_chunk`, the one place
the references touch the product's hot path: when that changes, change this function only.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dbos import DBOS, EnqueueOptions

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers import _runtime as runtime
from dbos_publishers._config import Settings
from dbos_publishers._ids import chunk_workflow_id
from dbos_publishers._publisher import Publisher
from dbos_publishers._wire import ChunkSpec
from lab.bench.modes import Mode
from lab.bench.spec import Spec, chunks, cpu_seconds, executor_id

RAW_WORKFLOW = "bench_raw_chunk"
RAW_QUEUE = "bench_raw_chunks"
RESULT_POLL_SEC = 0.05
Samples = list[tuple[float, int]]  # (ms from the start to a chunk committed, its messages)


def commit_chunk(publisher: Publisher, chunk: ChunkSpec) -> int:
    """Build the chunk's rows as the product's `publish_chunk` does and commit the product's
    chunk transaction (batch-state check, ledger rows, both counters). Inside a workflow it is a
    checkpointed datasource step; outside one DBOS's datasource runs it as a plain transaction
    on its engine, with no checkpoint and no DBOS runtime behind it."""
    entries = publisher._entries(chunk, chunk_workflow_id(chunk["batch_id"], chunk["index"]))
    return publisher._commit_chunk(entries)


class Reference:
    """What the running reference needs inside its workflows (set by `run_dbos_raw`)."""

    rt: runtime.Runtime | None = None


@DBOS.workflow(name=RAW_WORKFLOW)
def raw_chunk(publisher_name: str, chunk: ChunkSpec) -> int:
    """One chunk (or message) as one datasource transaction, nothing else."""
    rt = Reference.rt
    assert rt is not None, "the dbos-raw reference is not running in this process"
    return commit_chunk(rt.publishers[publisher_name], chunk)


def run_ceiling(spec: Spec, settings: Settings, mode: Mode) -> tuple[Samples, float, float]:
    """(samples, seconds, cpu_s): every chunk committed by a pool of threads, one connection
    each (one on SQLite, which has one writer). The runtime builds the publisher instances and
    the datasource; DBOS is never launched."""
    rt = runtime.build(runtime.validate(settings))
    threads = 1 if settings.app_db.backend == "sqlite" else spec.chunk_concurrency
    samples: Samples = []
    lock = threading.Lock()
    try:
        cpu_before, start = cpu_seconds(), time.time()

        def commit(item: tuple[str, ChunkSpec]) -> None:
            count = commit_chunk(rt.publishers[item[0]], item[1])
            with lock:
                samples.append(((time.time() - start) * 1000, count))

        with ThreadPoolExecutor(threads, thread_name_prefix="bench-ceiling") as pool:
            list(pool.map(commit, chunks(spec, mode.chunk_size)))
        return samples, time.time() - start, cpu_seconds() - cpu_before
    finally:
        runtime.shutdown(rt)


def run_dbos_raw(spec: Spec, settings: Settings, mode: Mode) -> tuple[Samples, float, float]:
    """(samples, seconds, cpu_s): a workflow per chunk on a queue of its own, enqueued by a
    DBOSClient from this process, which is also the one worker running them."""
    rt = runtime.build(runtime.validate(settings), executor_id=executor_id(0))
    Reference.rt = rt
    try:
        runtime.launch(rt)
        DBOS.register_queue(
            RAW_QUEUE,
            worker_concurrency=spec.chunk_concurrency,
            polling_interval_sec=mode.polling_interval_sec,
            on_conflict="always_update",
        )
        time.sleep(1.2)  # DBOS starts a newly registered queue's worker on a one-second tick
        with dbos_gateway.client(settings.system_db) as client:
            cpu_before, start = cpu_seconds(), time.time()
            handles: list[Any] = []
            for publisher, chunk in chunks(spec, mode.chunk_size):
                options: EnqueueOptions = {
                    "workflow_name": RAW_WORKFLOW,
                    "queue_name": RAW_QUEUE,
                    "workflow_id": chunk_workflow_id(chunk["batch_id"], chunk["index"]),
                }
                handles.append(client.enqueue(options, publisher, chunk))
            for handle in handles:
                handle.get_result(polling_interval_sec=RESULT_POLL_SEC)
            seconds, cpu_s = time.time() - start, cpu_seconds() - cpu_before
        done = DBOS.list_workflows(
            workflow_id_prefix="batch-bench-", name=RAW_WORKFLOW, load_input=False
        )
        return (
            [(float(wf.updated_at or 0) - start * 1000, int(wf.output or 0)) for wf in done],
            seconds,
            cpu_s,
        )
    finally:
        Reference.rt = None
        runtime.shutdown(rt)
