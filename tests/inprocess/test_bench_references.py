"""The benchmark's reference rows check the same invariants as the product's rows: measured in
this process on SQLite, tiny; then with a miscounting chunk write (one count too many per chunk)
swapped in for the references' one contact with the product (`chunk_writer`), `exact` is false."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app import ledger
from app.bench import references, worker
from app.bench.references import ChunkWrite
from app.bench.spec import Spec
from app.publishers.base import ChunkSpec, Publisher
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
    honest = references.chunk_writer

    def miscounting(publisher: Publisher, chunk: ChunkSpec) -> ChunkWrite:
        write = honest(publisher, chunk)

        def wrong(conn: sa.Connection) -> int:
            count = write(conn)
            ledger.bump_counters(conn, publisher.name, chunk["topic"], 1)
            return count

        return wrong

    monkeypatch.setattr(references, "chunk_writer", miscounting)
    with process_state_restored():
        found = worker.measure(_spec(mode))
    assert not found.exact
    assert any("counter" in violation for violation in found.violations), found.violations
