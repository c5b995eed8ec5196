"""JsonlFilePublisher: each chunk appended to one file, opened once and closed at shutdown."""

from __future__ import annotations

import json
from pathlib import Path

from dbos_publishers.contrib.jsonl import JsonlFilePublisher
from dbos_publishers.store import _ledger as ledger
from tests.inprocess.conftest import StartService

MESSAGES = 45  # five chunks of 10, the last one short


def test_a_clean_run_writes_each_message_once_and_closes_the_file(
    start_service: StartService, tmp_path: Path
) -> None:
    path = tmp_path / "out.jsonl"
    service = start_service(
        '[[publishers]]\nname = "files"\n'
        'class = "dbos_publishers.contrib.jsonl:JsonlFilePublisher"\n'
        f'chunk_size = 10\n[publishers.options]\npath = "{path}"\n'
    )
    publisher = service.rt.publishers["files"]
    assert isinstance(publisher, JsonlFilePublisher)
    opened = publisher._file
    assert opened is not None and not opened.closed  # opened before launch, by the runtime

    summary = service.publish("files", MESSAGES)

    assert summary["published"] == MESSAGES
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted(line["key"] for line in lines) == sorted(
        ledger.message_id("b1", position) for position in range(MESSAGES)
    )
    assert all(set(line) == {"key", "payload"} for line in lines)
    assert json.loads(lines[0]["payload"])["publisher"] == "files"  # an EventPublisher event
    state = service.ledger_state({"b1": MESSAGES})
    assert state.report.ok, state.report.violations

    service.stop()
    assert opened.closed
    assert publisher._file is None
