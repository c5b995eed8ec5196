"""The dashboard's data: counters, queues, batches, workers, takeovers and the invariant check,
read from both databases for one request."""

from __future__ import annotations

from collections import Counter

from dbos import DBOSClient, WorkflowStatus

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers import _failpoints as failpoints
from dbos_publishers import _lifecycle as lifecycle
from dbos_publishers._config import ConfigError, Settings
from dbos_publishers._ids import batch_workflow_id, batch_workflow_of, is_chunk_or_retry
from dbos_publishers.ops import _fleet_view as fleet
from dbos_publishers.ops import _history as history
from dbos_publishers.ops import _work as work
from dbos_publishers.ops.dashboard.models import (
    BatchTimeline,
    BatchView,
    CounterSample,
    Invariant,
    Overview,
    QueueDepth,
    TakeoverView,
)
from dbos_publishers.store import _batch_records as batch_records
from dbos_publishers.store import _invariants as invariants
from dbos_publishers.store._database import read_snapshot, require_reachable

RECENT_BATCHES = 12


class UnknownBatchError(ConfigError):
    """No batch with that id (the API answers 404)."""


def gather(settings: Settings, client: DBOSClient, recovered_at_start: int) -> Overview:
    require_reachable(settings.app_db)
    require_reachable(settings.system_db)
    active, dead = dbos_gateway.active_and_dead(client)
    dead = lifecycle.still_dead(settings, dead)  # as `status` counts them
    with read_snapshot(settings.app_db) as conn:  # counters and ledger as of one moment
        report = invariants.check(conn)
        recent = batch_records.recent_batches(conn, RECENT_BATCHES)
    crew = fleet.gather(settings, active)
    return Overview(
        publishers=[d.name for d in settings.publishers],
        counters=[
            CounterSample(publisher=r.publisher, topic=r.topic, local_counter=r.local_counter)
            for r in report.publishers
        ],
        ledger_rows=report.ledger_rows,
        queues=[
            QueueDepth(queue=queue, pending=c["PENDING"], enqueued=c["ENQUEUED"])
            for queue, c in work.pending_work(active).items()
        ],
        batches=_batches(client, recent, dead),
        workers=crew.workers,
        takeovers=[TakeoverView.model_validate(t) for t in reversed(crew.takeovers)],
        takeovers_total=crew.takeovers_total,
        recovered_at_start=recovered_at_start,
        failpoints_fired=failpoints.fired_counts(),
        invariant=invariant(report),
    )


def _batches(
    client: DBOSClient, recent: list[batch_records.BatchProgress], dead: list[WorkflowStatus]
) -> list[BatchView]:
    """Each planned batch beside its workflow's DBOS status and its chunks that died."""
    ids = [batch_workflow_id(b.batch_id) for b in recent]
    status = {wf.workflow_id: wf.status for wf in dbos_gateway.workflows(client, ids)}
    failed = Counter(
        batch_workflow_of(wf.workflow_id) for wf in dead if is_chunk_or_retry(wf.workflow_id)
    )
    return [
        BatchView(
            batch_id=b.batch_id,
            publisher=b.publisher,
            topic=b.topic,
            messages=b.messages,
            chunks=b.chunks,
            published=b.published,
            percent=b.percent,
            status=status.get(batch_workflow_id(b.batch_id)),
            failed_chunks=failed[batch_workflow_id(b.batch_id)],
        )
        for b in recent
    ]


def invariant(report: invariants.InvariantReport) -> Invariant:
    """The invariant check as one sentence a person reads."""
    if report.ok:
        sentence = (
            f"Every counter agrees with the ledger: {len(report.publishers)} local and "
            f"{len(report.topics)} global counters match its {report.ledger_rows} rows."
        )
    else:
        sentence = f"Counters disagree with the ledger: {'; '.join(report.violations)}."
    return Invariant(consistent=report.ok, sentence=sentence, violations=report.violations)


def timeline(settings: Settings, batch_id: str) -> BatchTimeline:
    try:
        described = history.describe(settings, batch_id)
        return BatchTimeline(**described, summary=history.summarize(described))
    except ConfigError as exc:  # describe's only refusal: no such batch
        raise UnknownBatchError(str(exc)) from None
