"""The benchmark's reference rows check the same invariants as the product's rows: measured in
this process on SQLite, tiny; then with a miscounting chunk write (one count too many per chunk)
swapped in for the references' one contact with the product (`commit_chunk`), `exact` is false."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from dbos_publishers._ids import chunk_workflow_id
from dbos_publishers._publisher import Publisher
from dbos_publishers._wire import ChunkSpec
from dbos_publishers.store import _counters as counters
from dbos_publishers.store import _ledger as ledger
from dbos_publishers.store._ledger import LedgerEntry
from lab.bench import references, worker
from lab.bench.spec import Spec
from tests.helpers import process_state_restored

REFERENCES = ["ceiling", "dbos-raw"]  # dbos-raw-per-message runs the same workflow


def _spec(mode: str) -> Spec:
    messages = 12 if mode == "dbos-raw-per-message" else 300
    return Spec("sqlite", mode, messages, 2, 2, "", workers=1, chunk_concurrency=2)


@pytest.mark.parametrize("mode", REFERENCES)
def test_a_reference_row_is_exact(mode: str) -> None:
    with process_state_restored():
        found = worker.measure(_spec(mode))
    assert found.exact and found.violations == []
    assert found.mode == mode and found.messages == _spec(mode).messages
    assert found.executors == (None if mode == "ceiling" else 1)


@pytest.mark.parametrize("mode", REFERENCES)
def test_a_reference_that_miscounts_is_not_exact(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def miscounting(publisher: Publisher, chunk: ChunkSpec) -> int:
        workflow_id = chunk_workflow_id(chunk["batch_id"], chunk["index"])
        entries = publisher._entries(chunk, workflow_id)

        def wrong(rows: Sequence[LedgerEntry]) -> int:
            conn = publisher.datasource.sql_session().connection()
            count = ledger.record_chunk(conn, rows)
            counters.bump_counters(conn, publisher.name, chunk["topic"], 1)
            return count

        count: int = publisher.datasource.run_tx_step(publisher.tx_options, wrong, entries)
        return count

    monkeypatch.setattr(references, "commit_chunk", miscounting)
    with process_state_restored():
        found = worker.measure(_spec(mode))
    assert not found.exact
    assert any("counter" in violation for violation in found.violations), found.violations
