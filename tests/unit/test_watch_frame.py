"""`status --watch` frames: the time and interval, msg/s from the change since the previous
frame, and per-batch progress with an ETA; the first frame has no rate to show."""

from __future__ import annotations

from datetime import UTC, datetime

from dbos_publishers.ops import _fleet_view as fleet
from dbos_publishers.ops import _follow as follow
from dbos_publishers.ops import _watch as watch
from dbos_publishers.ops._status import StatusSnapshot
from dbos_publishers.store._batch_records import BatchProgress
from dbos_publishers.store._ledger import CounterRow, TopicRow


def _snapshot(published: int, at: float) -> StatusSnapshot:
    return StatusSnapshot(
        publishers=[],
        local_counters=[CounterRow("orders", "default", published, published)],
        global_counters=[TopicRow("default", published, published, published)],
        ledger_rows=published,
        consistent=True,
        violations=[],
        work={},
        dead={},
        orphans={},
        fleet=fleet.FleetSnapshot(workers=[], takeovers=[], takeovers_total=0, stranded=[]),
        batches=[
            BatchProgress(
                "big", "orders", "default", 10_000, 20, "active", datetime.now(UTC), published
            )
        ],
        read_at=at,
    )


def _row(text: str, first: str) -> list[str]:
    return next(line.split() for line in text.splitlines() if line.startswith(first))


def test_a_frame_shows_rates_and_an_eta_from_the_previous_frame() -> None:
    text = watch.frame(_snapshot(4000, 1002.0), _snapshot(2000, 1000.0), 2.0, terminal=False)
    assert "every 2 s" in text and "Ledger rows: 4000" in text
    assert _row(text, "orders")[-1] == "1,000"  # (4000 - 2000) / 2 s
    assert _row(text, "big") == [
        "big",
        "orders",
        "default",
        "4000",
        "10000",
        "40.0%",
        "1,000",
        "6",
        "s",
    ]


def test_the_first_frame_has_no_rate() -> None:
    text = watch.frame(_snapshot(4000, 1002.0), None, 2.0, terminal=False)
    assert _row(text, "orders")[-1] == "-"
    assert _row(text, "big")[-2:] == ["-", "-"]


def test_the_live_line_says_no_service_only_once_one_would_have_polled() -> None:
    assert follow.queue_note("ENQUEUED", 0.5) == " (queued)"
    assert follow.queue_note("ENQUEUED", follow.HINT_AFTER_SEC) == " (waiting for a service)"
    assert follow.queue_note("PENDING", 60.0) == ""
