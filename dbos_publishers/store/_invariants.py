"""The invariants the product promises after any crash, checked against the application database."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import sqlalchemy as sa

from dbos_publishers.store import _ledger as ledger

MISSING_IDS_SHOWN = 10


@dataclass
class InvariantReport:
    violations: list[str] = field(default_factory=list)
    publishers: list[ledger.CounterRow] = field(default_factory=list)  # the rows it checked
    topics: list[ledger.TopicRow] = field(default_factory=list)
    ledger_rows: int = 0
    missing: dict[str, int] = field(default_factory=dict)
    missing_ids: list[str] = field(default_factory=list)  # the first MISSING_IDS_SHOWN of them
    duplicates: dict[str, int] = field(default_factory=dict)
    unexpected: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations


def check(
    conn: sa.Connection, expected_batches: Mapping[str, int] | None = None
) -> InvariantReport:
    """Local counter = ledger rows per (publisher, topic); global = sum of locals = ledger rows.

    With `expected_batches` (batch id -> message count), also: every position of every batch is
    in the ledger exactly once and nothing else is. Our message id (batch:position) is the primary
    key, so a duplicate needs a publisher with other ids; a duplicate publish under the same id
    shows up as a counter ahead of the ledger.
    """
    report = judge(ledger.publisher_counts(conn), ledger.topic_counts(conn))
    for batch_id, count in (expected_batches or {}).items():
        _check_batch(conn, report, batch_id, count)
    return report


def judge(publishers: list[ledger.CounterRow], topics: list[ledger.TopicRow]) -> InvariantReport:
    """The counter invariants over rows already read (in one snapshot: see `agree`)."""
    report = InvariantReport(publishers=publishers, topics=topics)
    for row in report.publishers:
        report.ledger_rows += row.ledger_rows
        if row.local_counter != row.ledger_rows:
            report.violations.append(
                f"local counter {row.publisher}/{row.topic} = {row.local_counter}, "
                f"ledger has {row.ledger_rows}"
            )
    for topic in report.topics:
        if not topic.global_counter == topic.sum_of_locals == topic.ledger_rows:
            report.violations.append(
                f"global counter {topic.topic} = {topic.global_counter}, sum of locals = "
                f"{topic.sum_of_locals}, ledger has {topic.ledger_rows}"
            )
    report.violations += agree(publishers, topics)
    return report


def agree(publishers: list[ledger.CounterRow], topics: list[ledger.TopicRow]) -> list[str]:
    """The per-publisher rows and the per-topic rows describe the same database state: read in
    one snapshot they always do, so a difference means they were read at different moments (a
    frame that would contradict itself) or a view is wrong."""
    locals_: dict[str, int] = {}
    rows: dict[str, int] = {}
    for row in publishers:
        locals_[row.topic] = locals_.get(row.topic, 0) + row.local_counter
        rows[row.topic] = rows.get(row.topic, 0) + row.ledger_rows
    found = []
    for topic in topics:
        seen = (locals_.pop(topic.topic, 0), rows.pop(topic.topic, 0))
        if seen != (topic.sum_of_locals, topic.ledger_rows):
            found.append(
                f"topic {topic.topic}: the publisher rows sum to {seen[0]} local / {seen[1]} "
                f"ledger, the topic row says {topic.sum_of_locals} / {topic.ledger_rows} "
                "(not one snapshot?)"
            )
    found += [f"topic {t}: publisher rows but no topic row (not one snapshot?)" for t in locals_]
    return found


def more_missing_ids(shown: list[str], batch_id: str, absent: list[int]) -> list[str]:
    """Message ids of absent positions to add to `shown`, which stays at most MISSING_IDS_SHOWN."""
    room = max(MISSING_IDS_SHOWN - len(shown), 0)
    return [ledger.message_id(batch_id, p) for p in absent[:room]]


def _check_batch(conn: sa.Connection, report: InvariantReport, batch_id: str, count: int) -> None:
    positions = ledger.batch_positions(conn, batch_id)
    present = set(positions)
    absent = sorted(set(range(count)) - present)
    unexpected = len(present - set(range(count)))
    duplicates = len(positions) - len(present)
    if absent:
        report.missing[batch_id] = len(absent)
        report.missing_ids += more_missing_ids(report.missing_ids, batch_id, absent)
        report.violations.append(f"batch {batch_id}: {len(absent)} of {count} messages missing")
    if duplicates:
        report.duplicates[batch_id] = duplicates
        report.violations.append(f"batch {batch_id}: {duplicates} positions published twice")
    if unexpected:
        report.unexpected[batch_id] = unexpected
        report.violations.append(f"batch {batch_id}: {unexpected} messages outside 0..{count - 1}")
