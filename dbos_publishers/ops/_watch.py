"""`status --watch`: a status frame every interval, with the time, messages per second per
publisher and topic (the change since the previous frame) and the progress of the batches still
publishing (published of total, %, ETA)."""

from __future__ import annotations

from datetime import datetime

from rich.table import Table

from dbos_publishers.ops import _fleet_view as fleet
from dbos_publishers.ops._status import Rates, StatusSnapshot, counter_parts, work_lines
from dbos_publishers.ops._tables import render, table


def frame(
    current: StatusSnapshot, previous: StatusSnapshot | None, interval: float, *, terminal: bool
) -> str:
    """One frame: a heading line, the counters with rates, batches in progress, work, workers."""
    at = datetime.fromtimestamp(current.read_at).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    heading = f"{at}  every {interval:g} s  (Ctrl-C stops)"
    seconds = current.read_at - previous.read_at if previous else 0.0
    parts: list[Table | str] = [heading, *counter_parts(current, _rates(previous, seconds))]
    parts.append(_batches(current, previous, seconds))
    parts += [*work_lines(current), *fleet.parts(current.fleet)]
    return render(*parts, terminal=terminal)


def _rate(now: int, before: int | None, seconds: float) -> str:
    if before is None or seconds <= 0:
        return "-"
    return f"{max(now - before, 0) / seconds:,.0f}"


def _rates(previous: StatusSnapshot | None, seconds: float) -> Rates:
    local = (
        {(r.publisher, r.topic): r.local_counter for r in previous.local_counters}
        if previous
        else {}
    )
    topic = {r.topic: r.global_counter for r in previous.global_counters} if previous else {}
    return Rates(
        local=lambda r: _rate(r.local_counter, local.get((r.publisher, r.topic)), seconds),
        topic=lambda r: _rate(r.global_counter, topic.get(r.topic), seconds),
    )


def _batches(
    current: StatusSnapshot, previous: StatusSnapshot | None, seconds: float
) -> Table | str:
    running = [b for b in current.batches if b.published < b.messages]
    if not running:
        return "Batches in progress: none"
    before = {b.batch_id: b.published for b in (previous.batches if previous else [])}
    rows = []
    for b in running:
        done_before = before.get(b.batch_id)
        rate = (
            (b.published - done_before) / seconds
            if done_before is not None and seconds > 0
            else 0.0
        )
        eta = f"{(b.messages - b.published) / rate:,.0f} s" if rate > 0 else "-"
        rows.append(
            (
                b.batch_id,
                b.publisher,
                b.topic,
                b.published,
                b.messages,
                f"{b.percent:.1f}%",
                f"{rate:,.0f}" if done_before is not None else "-",
                eta,
            )
        )
    headers = ["batch", "publisher", "topic", "published>", "of>", "%>", "msg/s>", "ETA>"]
    return table(headers, rows, title="Batches in progress:")
