"""cancel, resume and retry of a batch, against the service in this process on SQLite files: a
cancel whose DBOS half never ran already publishes nothing more, cancel run again stops every
chunk, resume completes the batch exactly, retry re-drives a failed chunk once."""

from __future__ import annotations

import pytest

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers import _failpoints as failpoints
from dbos_publishers import _lifecycle as lifecycle
from dbos_publishers._failpoints import FailpointError
from dbos_publishers._ids import batch_workflow_id
from dbos_publishers._lifecycle import BatchNotFoundError, BatchStateError
from dbos_publishers.ops import _status as status
from dbos_publishers.store import _ledger as ledger
from dbos_publishers.store._database import short_lived_engine
from tests.helpers import wait_until
from tests.inprocess.conftest import InProcessService, StartService

PUBLISHERS = """
[[publishers]]
name = "orders"
class = "dbos_publishers.contrib.events:EventPublisher"
chunk_size = 10
"""
# Slow chunks, so a cancel lands mid-batch whatever the machine's speed.
PACED = "chunk.start=delay(100)@every"


def _statuses(service: InProcessService, batch_id: str) -> dict[str, str]:
    with dbos_gateway.client(service.settings.system_db) as client:
        family = dbos_gateway.workflow_family(client, batch_workflow_id(batch_id))
    return {wf.workflow_id: wf.status for wf in family}


def _ledger(service: InProcessService, batch_id: str) -> int:
    with short_lived_engine(service.settings.app_db) as engine, engine.connect() as conn:
        return ledger.batch_published(conn, batch_id)


def _held(service: InProcessService, batch_id: str) -> int:
    """Chunk workflows that rolled back on the cancelled state and wait (a DBOS.sleep step)."""
    chunks = [wf for wf in _statuses(service, batch_id) if "/chunk-" in wf]
    return sum(1 for wf in chunks if "DBOS.sleep" in service.step_names(wf))


def _summary(service: InProcessService, batch_id: str) -> dict[str, object]:
    with dbos_gateway.client(service.settings.system_db) as client:
        summary = dbos_gateway.wait_result(client, batch_workflow_id(batch_id))
        return lifecycle.merged_summary(client, summary)


def test_cancel_publishes_nothing_more_even_half_done_and_resume_completes_exactly(
    start_service: StartService,
) -> None:
    service = start_service(PUBLISHERS, failpoint_spec=f"{PACED};cancel.after_state=raise")
    service.submit("orders", 300, "big")
    wait_until(lambda: _ledger(service, "big") >= 40, "40 messages published")

    # The state commits, then the cancel dies before DBOS hears of it.
    with pytest.raises(FailpointError):
        lifecycle.act(service.settings, "cancel", "big")
    at_cancel = _ledger(service, "big")
    assert at_cancel < 300
    # Chunks still run, roll back on the state and wait; the four queue slots fill with them.
    wait_until(
        lambda: _held(service, "big") >= 4 or _ledger(service, "big") != at_cancel,
        "four chunks held, or a message published",
    )
    assert _ledger(service, "big") == at_cancel, "published after the cancel committed"

    failpoints.arm(PACED)
    again = lifecycle.act(service.settings, "cancel", "big")
    assert (again.state, again.published) == ("cancelled", at_cancel)
    statuses = _statuses(service, "big")
    assert statuses[batch_workflow_id("big")] == "CANCELLED"
    assert set(again.workflows) == {wf for wf, s in statuses.items() if s == "CANCELLED"}
    assert set(statuses.values()) == {"CANCELLED", "SUCCESS"}
    succeeded = sum(1 for s in statuses.values() if s == "SUCCESS")
    assert succeeded * 10 == at_cancel  # every chunk that succeeded, and only those, published

    resumed = lifecycle.act(service.settings, "resume", "big")
    assert resumed.state == "active" and resumed.workflows[-1] == batch_workflow_id("big")
    summary = _summary(service, "big")
    assert (summary["published"], summary["failed"]) == (300, 0)
    state = service.ledger_state({"big": 300})
    assert state.report.violations == [] and state.local_counters == [("orders", "default", 300)]


def test_retry_re_drives_a_failed_chunk_once_and_the_summary_merges_it(
    start_service: StartService,
) -> None:
    service = start_service(PUBLISHERS, failpoint_spec="chunk.start=raise@3")
    before = service.publish("orders", 50, "flaky")
    assert (before["published"], before["failed"]) == (40, 10)
    (failed,) = before["failed_chunks"]
    assert status.gather(service.settings).dead == {"publish_chunk": {"ERROR": 1}}

    first = lifecycle.act(service.settings, "retry", "flaky")
    assert first.workflows == [f"{failed['workflow_id']}/retry-1"]
    assert lifecycle.act(service.settings, "retry", "flaky").workflows == []  # in hand already
    wait_until(lambda: _ledger(service, "flaky") == 50, "the retried chunk published")
    wait_until(
        lambda: _statuses(service, "flaky")[first.workflows[0]] == "SUCCESS", "retry succeeded"
    )
    assert lifecycle.act(service.settings, "retry", "flaky").workflows == []  # done already
    assert status.gather(service.settings).dead == {}  # resolved by its retry

    merged = _summary(service, "flaky")
    assert (merged["published"], merged["failed"], merged["failed_chunks"]) == (50, 0, [])
    assert [c["workflow_id"] for c in merged["retried_chunks"]] == first.workflows  # type: ignore[attr-defined]
    state = service.ledger_state({"flaky": 50})
    assert state.report.violations == [] and state.local_counters == [("orders", "default", 50)]


def test_each_action_refuses_a_batch_in_the_wrong_state(start_service: StartService) -> None:
    service = start_service(PUBLISHERS)
    service.publish("orders", 20, "done")
    with pytest.raises(BatchNotFoundError, match="no batch with id 'nope'"):
        lifecycle.act(service.settings, "cancel", "nope")
    with pytest.raises(BatchStateError, match="already ended SUCCESS"):
        lifecycle.act(service.settings, "cancel", "done")
    with pytest.raises(BatchStateError, match="is not cancelled"):
        lifecycle.act(service.settings, "resume", "done")
    with pytest.raises(BatchStateError, match="no failed chunks"):
        lifecycle.act(service.settings, "retry", "done")
