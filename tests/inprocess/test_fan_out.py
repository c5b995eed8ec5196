"""The batch workflow's fan-out: a new batch's plan names how it fans out (no patch markers), each
window of chunk workflows goes in as DBOS's own rows in one executemany, and the window wait
reads which chunks are still running."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from dbos import _dbos
from dbos._core import prepare_enqueued_workflow
from dbos._sys_db import SystemDatabase

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers._ids import batch_workflow_id, chunk_workflow_id
from dbos_publishers._publisher import AWAIT_STEP, ENQUEUE_STEP, FINISH_STEP, PLAN_STEP
from dbos_publishers._wire import FAN_OUT_WINDOWS, BatchPlan, ChunkSpec
from tests.inprocess.conftest import InProcessService, StartService

DECLARED = '[[publishers]]\nname = "p"\nclass = "dbos_publishers.contrib.events:EventPublisher"\n'
CHUNK_SIZE = 10
MESSAGES = 30  # three chunks of 10
HELD_QUEUE = "held"  # a queue no worker dequeues: what is enqueued on it stays ENQUEUED
STAMPS = {"workflow_uuid", "created_at", "updated_at", "retention_timestamp"}


def _service(start_service: StartService) -> InProcessService:
    return start_service(DECLARED + f"chunk_size = {CHUNK_SIZE}\n")


def _statuses(service: InProcessService, ids: list[str], queue: str) -> list[Any]:
    """DBOS's own ENQUEUED rows for chunk workflows of publisher p (chunk i under ids[i])."""
    dbos = _dbos._get_dbos_instance()
    chunk = service.rt.publishers["p"].publish_chunk
    return [
        prepare_enqueued_workflow(
            dbos, chunk, (_chunk(index),), {}, queue_name=queue, workflow_id=workflow_id
        )
        for index, workflow_id in enumerate(ids)
    ]


def _chunk(index: int) -> ChunkSpec:
    return ChunkSpec(batch_id="x", topic="default", index=index, start=0, count=1, messages=None)


def _rows(table: sa.Table, ids: list[str]) -> list[dict[str, Any]]:
    """Each workflow's row, in the order of `ids`, without its id and time stamps."""
    sys_db = _dbos._get_dbos_instance()._sys_db
    with sys_db.engine.connect() as conn:
        found = conn.execute(sa.select(table).where(table.c.workflow_uuid.in_(ids))).mappings()
        by_id = {row["workflow_uuid"]: row for row in found}
    return [{k: v for k, v in by_id[i].items() if k not in STAMPS} for i in ids]


def test_a_new_batch_names_its_fan_out_in_its_plan_and_records_no_patch_marker(
    start_service: StartService,
) -> None:
    service = _service(start_service)
    summary = service.publish("p", MESSAGES)
    assert (summary["published"], summary["chunks"]) == (MESSAGES, 3)
    steps = [PLAN_STEP, ENQUEUE_STEP, AWAIT_STEP, FINISH_STEP]
    assert service.step_names(batch_workflow_id("b1")) == steps
    with dbos_gateway.client(service.settings.system_db) as client:
        plan = dbos_gateway.steps(client, batch_workflow_id("b1"))[0]["output"]
    assert plan == BatchPlan(chunk_size=CHUNK_SIZE, fan_out=FAN_OUT_WINDOWS)


def test_a_window_is_inserted_as_the_rows_dbos_writes_itself_and_only_once(
    start_service: StartService,
) -> None:
    service = _service(start_service)
    theirs, ours_ids = ["dbos-0", "dbos-1", "dbos-2"], ["ours-0", "ours-1", "ours-2"]
    sys_db = _dbos._get_dbos_instance()._sys_db
    SystemDatabase.init_workflows(sys_db, _statuses(service, theirs, HELD_QUEUE))
    as_many: Any = dbos_gateway._RowsSentAsMany(sys_db)
    SystemDatabase.init_workflows(as_many, _statuses(service, ours_ids, HELD_QUEUE))
    for table in (sys_db.tables.workflow_status, sys_db.tables.workflow_input):
        assert _rows(table, ours_ids) == _rows(table, theirs)
    inputs = [row["inputs"] for row in _rows(sys_db.tables.workflow_input, ours_ids)]
    assert len(set(inputs)) == len(ours_ids)  # each chunk under its own id, in order
    # A step run again after a crash between its insert and its checkpoint adds nothing.
    SystemDatabase.init_workflows(as_many, _statuses(service, ours_ids, HELD_QUEUE))
    with sys_db.engine.connect() as conn:
        table = sys_db.tables.workflow_status
        count = sa.select(sa.func.count()).where(table.c.workflow_uuid.in_(ours_ids))
        assert conn.scalar(count) == len(ours_ids)


def test_the_window_wait_reads_only_the_chunks_still_queued_or_running(
    start_service: StartService,
) -> None:
    service = _service(start_service)
    service.publish("p", MESSAGES)
    done = [chunk_workflow_id("b1", index) for index in range(3)]
    assert dbos_gateway.still_active(done) == []
    sys_db = _dbos._get_dbos_instance()._sys_db
    SystemDatabase.init_workflows(sys_db, _statuses(service, ["held-0"], HELD_QUEUE))
    assert dbos_gateway.still_active([*done, "held-0", "no-such-workflow"]) == ["held-0"]
