"""The batches' metrics, read from the application database when Prometheus scrapes (exact, as
the other counts are): batches by state, lifecycle events, duration and queue wait."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime

import sqlalchemy as sa
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric

from dbos_publishers._config import Settings
from dbos_publishers.store import _batch_list as batch_list
from dbos_publishers.store._batch_list import LISTED_STATES, BatchTiming
from dbos_publishers.store._database import short_lived_engine
from dbos_publishers.store._schema import batch_events

BUCKETS = (0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0)


def collect(settings: Settings) -> Iterator[Metric]:
    """The batch metrics; none before the batch tables exist (migration 0008)."""
    with short_lived_engine(settings.app_db) as engine, engine.connect() as conn:
        if not sa.inspect(conn).has_table(batch_events.name):
            return
        timings = batch_list.batch_timings(conn)
        events = batch_list.event_counts(conn)
    yield _by_state(timings)
    yield _events(events)
    yield _histogram(
        "publisher_batch_duration_seconds",
        "Finished batches: seconds from their start (plan) to their last step",
        ((t.publisher, t.started_at, t.ended_at) for t in timings if _finished(t)),
    )
    yield _histogram(
        "publisher_batch_queue_wait_seconds",
        "Started batches: seconds from their submission to their start (enqueued to planned)",
        ((t.publisher, t.submitted_at, t.started_at) for t in timings),
    )


def _finished(timing: BatchTiming) -> bool:
    return timing.state in ("succeeded", "failed")


def _by_state(timings: list[BatchTiming]) -> Metric:
    gauge = GaugeMetricFamily(
        "publisher_batches",
        "Batches by state: queued, running, succeeded, failed, cancelled",
        labels=["publisher", "state"],
    )
    counted = Counter((t.publisher, t.state) for t in timings)
    for publisher in sorted({t.publisher for t in timings}):
        for state in LISTED_STATES:
            gauge.add_metric([publisher, state], counted[(publisher, state)])
    return gauge


def _events(events: dict[tuple[str, str], int]) -> Metric:
    counter = CounterMetricFamily(
        "publisher_batch_events",
        "Batch lifecycle events recorded: submitted, started, cancelled, resumed, retried, "
        "finished",
        labels=["publisher", "event"],
    )
    for (publisher, event), count in sorted(events.items()):
        counter.add_metric([publisher, event], count)
    return counter


def _histogram(
    name: str, about: str, spans: Iterable[tuple[str, datetime | None, datetime | None]]
) -> Metric:
    seconds: dict[str, list[float]] = defaultdict(list)
    for publisher, start, end in spans:
        if start is not None and end is not None:
            seconds[publisher].append(max(0.0, (end - start).total_seconds()))
    family = HistogramMetricFamily(name, about, labels=["publisher"])
    for publisher, values in sorted(seconds.items()):
        buckets = [(str(le), float(sum(1 for v in values if v <= le))) for le in BUCKETS]
        buckets.append(("+Inf", float(len(values))))
        family.add_metric([publisher], buckets, sum_value=sum(values))
    return family
