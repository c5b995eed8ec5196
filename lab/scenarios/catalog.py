"""The scenario catalog: every failpoint with crash and with raise, chaos, side effects, and the
deliberately broken variants that show each check catches what it claims to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from dbos_publishers._failpoints import CATALOG as FAILPOINTS

EVENTS = "dbos_publishers.contrib.events:EventPublisher"
WEBHOOK = "dbos_publishers.contrib.webhook:WebhookPublisher"
BROKEN = "lab.publishers.broken"
VERSIONS = "lab.publishers.versions"

# How a faulty run ends:
#   crash          the service SIGKILLs itself at the failpoint
#   submit-fails   the publish client crashes or fails before enqueueing; the service is stopped
#   startup-fails  the service dies or exits non-zero before it is ready
#   settled        the fault is absorbed or reported; once no work is active the service stops
#   killed         the lab SIGKILLs the service once the ledger holds `kill_at` of the messages
Ending = Literal["crash", "submit-fails", "startup-fails", "settled", "killed"]
# What the restart must reach:
#   complete   every message published exactly once
#   contained  a permanent error stopped part of the work: every message is published exactly
#              once or belongs to a workflow that ended in ERROR (so it is reported), never lost
#              silently, never half-written
Outcome = Literal["complete", "contained"]
# Multi-worker scenarios (Postgres only): what happens to the workers while the batches run.
#   sigkill   one worker is SIGKILLed mid-batch and never restarted: the others take over
#   zombie    one worker is SIGSTOPped past its lease, taken over, then SIGCONTed: it must stop
#   rolling   each worker in turn gets SIGTERM and starts again (a new executor id)
#   chaos     seeded SIGKILLs of random workers, some restarted, some not
#   mixed     seeded SIGKILLs, freezes and hangs of random workers (fleet/chaos, fleet_chaos.py)
TakeoverKind = Literal["sigkill", "zombie", "rolling", "chaos", "mixed"]
# One stuck worker of several (Postgres only), past its lease, while the others must keep
# committing (see stuck.py):
#   freeze     SIGSTOP inside a chunk transaction, later another worker inside a dequeue
#   hang       a chunk transaction hangs before its commit (chunk.before_commit=hang)
#   partition  the worker, in its own network namespace, is cut from the lab's Postgres
StuckFault = Literal["freeze", "hang", "partition"]
# Faults of the Postgres server itself (the lab's own throwaway cluster), mid-batch:
#   restart                  fast restart (pg_ctl restart -m fast)
#   outage                   stopped for a while, then started again
#   terminate-connections    pg_terminate_backend on every connection of the service, repeatedly
#   restart-during-recovery  SIGKILL the service, restart it, restart Postgres while it recovers
#   immediate-stop           pg_ctl stop -m immediate (a crash: WAL replay at the next start)
#   chaos                    seeded mix of the above and SIGKILLs of the service
InfraFault = Literal[
    "restart",
    "outage",
    "terminate-connections",
    "restart-during-recovery",
    "immediate-stop",
    "chaos",
]
# Deploys while work is pending: the crash on version N, the restart on N+1.
#   compatible   N+1 changes code compatibly under the same APP_VERSION
#   patched      N+1 changes the chunk workflow's steps behind DBOS.patch
#   new-version  N+1 runs a new APP_VERSION; `python -m app upgrade` moves the old work over
UpgradeKind = Literal["compatible", "patched", "new-version"]
# A batch's lifecycle, with the service running throughout:
#   cancel            `cancel` SIGKILLed after its state committed, run again, then `resume`
#   retry             a chunk fails for good; `retry` (twice) re-drives it once
#   cancel-dbos-only  `dbos workflow cancel batch-X`, the advice before `cancel` existed
LifecycleKind = Literal["cancel", "retry", "cancel-dbos-only"]
# One chunk at a time, each 3 s: a cancel (a CLI that took over 13 s to start on a box loaded
# by the whole suite) lands mid-batch, and chunks keep trying to commit while the lab watches.
PACED = "chunk.start=delay(3000)@every"


@dataclass(frozen=True)
class Fault:
    """One run of the service with a fault injected."""

    failpoints: str
    ends: Ending
    kill_at: float = 0.0  # fraction of the messages in the ledger, for "killed"
    kill_delay_sec: float = 0.0  # then wait this long before the SIGKILL


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    faults: tuple[Fault, ...]
    publishers: dict[str, str] = field(default_factory=lambda: {"orders": EVENTS})
    topics: tuple[str, ...] = ("default",)
    messages: int = 400
    chunk_size: int = 20
    chunk_concurrency: int = 2
    restart_env: dict[str, str] = field(default_factory=dict)  # the restart's deployment
    restart_publishers: dict[str, str] = field(default_factory=dict)  # N+1's classes (upgrade/*)
    receiver: bool = False  # publishers deliver side effects to the lab's HTTP receiver
    chaos_kills: int = 0  # > 0: the faults are a seeded kill schedule (see chaos.py)
    outcome: Outcome = "complete"
    broken: bool = False  # expected to fail: run by name, never by --all
    workers: int = 1  # > 1: that many workers share one Postgres database
    takeover: TakeoverKind | None = None
    serve: tuple[str, ...] = ()  # the workers' command instead of `python -m app serve`
    via_dbos_start: bool = False  # workers run under `dbos start`, as deployed
    infra: InfraFault | None = None  # pg/*: runs on a Postgres cluster the lab owns
    upgrade: UpgradeKind | None = None
    lifecycle: LifecycleKind | None = None
    stuck: StuckFault | None = None

    @property
    def postgres_only(self) -> bool:
        return self.workers > 1 or self.infra is not None or self.stuck is not None


# Which hit of a failpoint fires: far enough into a 400-message batch that work is in flight.
NTH = {
    "fanout.after_enqueue": 5,
    "chunk.start": 5,
    "chunk.before_commit": 5,
    "chunk.after_commit": 5,
    "fanin.after_result": 5,
}
HELD_CHUNK = 8  # a chunk after the 5th result, before the last of 200 messages in 20s
# raise: a permanent error ends its workflow in ERROR, which DBOS never runs again; the scenario
# then checks the failure is contained (see Outcome). Inside the chunk transaction the error is
# transient and the commit retries absorb it; after the commit DBOS replays the recorded result.
RAISE_ACTION = {"chunk.before_commit": "raise-transient"}
ABSORBED = {"chunk.before_commit", "chunk.after_commit"}
RAISE_ENDS: dict[str, Ending] = {
    "batch.submit": "submit-fails",
    "service.recovery": "startup-fails",
}
KILL_FIRST = Fault("", "killed", kill_at=0.3)  # pending work for the recovery failpoint
# The publish path's own failpoints, in path order (publisher classes may declare more).
LAB_FAILPOINTS = (
    "batch.submit",
    "batch.start",
    "fanout.after_enqueue",
    "chunk.start",
    "chunk.before_commit",
    "chunk.after_commit",
    "fanin.after_result",
    "batch.before_complete",
    "service.recovery",
)


def _spec(point: str, action: str) -> str:
    nth = NTH.get(point)
    return f"{point}={action}@{nth}" if nth else f"{point}={action}"


def _raise_outcome(point: str) -> Outcome:
    # Client and start-up errors stop nothing durable: the retry or restart completes the work.
    if point in ABSORBED or point in RAISE_ENDS:
        return "complete"
    return "contained"


def _failpoint_scenarios(point: str) -> list[Scenario]:
    prelude = (KILL_FIRST,) if point == "service.recovery" else ()
    crash_ends = RAISE_ENDS.get(point, "crash")
    raise_action = RAISE_ACTION.get(point, "raise")
    return [
        Scenario(
            name=f"{point}/crash",
            summary=f"SIGKILL at {point}: {FAILPOINTS[point]}",
            faults=(*prelude, Fault(_spec(point, "crash"), crash_ends)),
        ),
        Scenario(
            name=f"{point}/{raise_action}",
            summary=f"{raise_action} at {point}: {FAILPOINTS[point]}",
            faults=(*prelude, Fault(_spec(point, raise_action), RAISE_ENDS.get(point, "settled"))),
            outcome=_raise_outcome(point),
        ),
    ]


def _special_scenarios() -> list[Scenario]:
    return [
        Scenario(
            name="chaos",
            summary="SIGKILL at seeded random moments, restart each time (3 publishers, 2 topics)",
            faults=(),
            publishers={name: EVENTS for name in ("orders", "billing", "audit")},
            topics=("default", "priority"),
            messages=10_200,
            chunk_size=50,
            chunk_concurrency=4,
            chaos_kills=20,
        ),
        Scenario(
            name="effects/idempotent",
            summary="side effects over HTTP with an idempotency key, SIGKILL after a delivery",
            faults=(Fault("effect.after_send=crash@5", "crash"),),
            publishers={"orders": WEBHOOK},
            receiver=True,
        ),
    ]


def _fleet(name: str, summary: str, kind: TakeoverKind, workers: int, **extra: Any) -> Scenario:
    """A multi-worker scenario: two publishers' batches shared by `workers` workers."""
    base: dict[str, Any] = {
        "publishers": {n: EVENTS for n in ("orders", "billing")},
        "messages": 4000,
    }
    return Scenario(
        name=name, summary=summary, faults=(), workers=workers, takeover=kind, **{**base, **extra}
    )


def _takeover_scenarios() -> list[Scenario]:
    return [
        _fleet(
            "takeover/sigkill",
            "3 `dbos start` workers; one SIGKILLed with its `dbos start` mid-batch and never "
            "restarted: the others finish its work",
            "sigkill",
            3,
            via_dbos_start=True,
        ),
        _fleet(
            "takeover/zombie",
            "a worker SIGSTOPped past its lease is taken over, then SIGCONTed: it must stop",
            "zombie",
            2,
        ),
        _fleet(
            "takeover/rolling-restart",
            "each of 3 workers in turn: SIGTERM, then started again (a new executor id)",
            "rolling",
            3,
        ),
        _fleet(
            "takeover/chaos",
            "seeded SIGKILLs of random workers of 3, some restarted, some not",
            "chaos",
            3,
            chaos_kills=6,
            publishers={name: EVENTS for name in ("orders", "billing", "audit")},
            topics=("default", "priority"),
            messages=6000,
        ),
        _fleet(
            "fleet/chaos",
            "seeded SIGKILLs, freezes past the lease and hung chunks of random workers of 3, "
            "each frozen or hung worker started again",
            "mixed",
            3,
            chaos_kills=6,
            messages=6000,
        ),
    ]


def _stuck(name: str, summary: str, fault: StuckFault, workers: int, **extra: Any) -> Scenario:
    """A stuck-worker scenario: two publishers' batches, one topic (every chunk of every worker
    adds to the same global counter), shared by `workers` workers."""
    base: dict[str, Any] = {"publishers": {n: EVENTS for n in ("orders", "billing")}}
    return Scenario(
        name=name,
        summary=summary,
        faults=(),
        workers=workers,
        stuck=fault,
        messages=STUCK_MESSAGES[fault],
        **{**base, **extra},
    )


STUCK_MESSAGES: dict[StuckFault, int] = {"freeze": 6000, "hang": 2400, "partition": 3000}
FREEZE_TRAP = ("-m", "lab.scenarios.freeze_trap")
UNBOUNDED = {n: f"{BROKEN}:UnboundedEventPublisher" for n in ("orders", "billing")}


def _stuck_scenarios() -> list[Scenario]:
    return [
        _stuck(
            "fleet/freeze",
            "3 workers; one SIGSTOPped inside a chunk transaction, then another inside a dequeue, "
            "each past its lease: the others commit on, take over, and recover the late dequeue",
            "freeze",
            3,
            serve=FREEZE_TRAP,
        ),
        _stuck(
            "fleet/hang",
            "2 workers; a chunk transaction of one hangs before its commit: the other commits on; "
            "the hung worker is SIGKILLed after the check and taken over",
            "hang",
            2,
        ),
        _stuck(
            "fleet/partition",
            "2 workers, one in its own network namespace cut from the lab's Postgres mid-chunk "
            "for 4 lease TTLs, then healed: the other commits on and takes over",
            "partition",
            2,
        ),
    ]


def _broken_stuck_scenarios() -> list[Scenario]:
    return [
        _stuck(
            "broken/freeze-recheck-window",
            "fleet/freeze with the old sweep: a taken-over executor re-checked for 3 lease TTLs",
            "freeze",
            3,
            serve=("-m", "lab.scenarios.recheck_window"),
            broken=True,
        ),
        _stuck(
            "broken/freeze-unbounded",
            "fleet/freeze with chunk transactions that lift their bounds",
            "freeze",
            3,
            serve=FREEZE_TRAP,
            publishers=UNBOUNDED,
            broken=True,
        ),
        _stuck(
            "broken/hang-unbounded",
            "fleet/hang with chunk transactions that lift their bounds",
            "hang",
            2,
            publishers=UNBOUNDED,
            broken=True,
        ),
        _stuck(
            "broken/partition-unbounded",
            "fleet/partition with chunk transactions that lift their bounds",
            "partition",
            2,
            publishers=UNBOUNDED,
            broken=True,
        ),
    ]


def _infra_scenarios() -> list[Scenario]:
    summaries: dict[InfraFault, str] = {
        "restart": "fast restart of Postgres mid-batch; the running service finishes the work",
        "outage": "Postgres down mid-batch, then up: /readyz 503 then 200, /healthz 200, "
        "the outage logged once",
        "terminate-connections": "pg_terminate_backend on every connection of the service, "
        "three times mid-batch",
        "restart-during-recovery": "SIGKILL the service, start it again, restart Postgres "
        "while it recovers",
        "immediate-stop": "pg_ctl stop -m immediate mid-batch (a crash: WAL replay), then start",
    }
    single = [
        Scenario(
            name=f"pg/{fault}",
            summary=summary,
            faults=(),
            infra=fault,
            messages=4000,
            chunk_size=20,
            chunk_concurrency=4,
        )
        for fault, summary in summaries.items()
    ]
    mixed = Scenario(
        name="pg/chaos",
        summary="seeded mix of service SIGKILLs and Postgres restarts, crashes, short outages "
        "and terminated connections (3 publishers, 2 topics)",
        faults=(),
        infra="chaos",
        publishers={name: EVENTS for name in ("orders", "billing", "audit")},
        topics=("default", "priority"),
        messages=6000,
        chunk_size=50,
        chunk_concurrency=4,
        chaos_kills=12,
    )
    return [*single, mixed]


def _upgrade_scenarios() -> list[Scenario]:
    validated = {"orders": f"{VERSIONS}:ValidatedEventPublisher"}
    return [
        Scenario(
            name="upgrade/compatible",
            summary="SIGKILL on version N mid-batch; N+1 under the same APP_VERSION (a log line "
            "per chunk, a new option with a default) finishes it",
            faults=(Fault(_spec("chunk.start", "crash"), "crash"),),
            restart_publishers={"orders": f"{VERSIONS}:LoggingEventPublisher"},
            upgrade="compatible",
        ),
        Scenario(
            name="upgrade/patched",
            summary="SIGKILL on N mid-batch; N+1 adds a chunk step behind DBOS.patch: chunks "
            "past the patch point finish the old way, the rest and a new batch the new way",
            faults=(Fault(_spec("chunk.before_commit", "crash"), "crash"),),
            publishers=validated,
            topics=("default", "later"),  # orders-later is submitted after the restart
            restart_publishers={"orders": f"{VERSIONS}:MeasuredEventPublisher"},
            upgrade="patched",
        ),
        Scenario(
            name="upgrade/new-version",
            summary="SIGKILL on N mid-batch; N+1 runs APP_VERSION=2: the old work is reported "
            "stranded, `upgrade` (SIGKILLed mid-move, then run again) moves it, N+1 finishes it",
            faults=(
                Fault(_spec("chunk.start", "crash"), "crash"),
                Fault("upgrade.after_move=crash@3", "crash"),  # the `upgrade` command's
            ),
            restart_env={"APP_VERSION": "2"},
            upgrade="new-version",
        ),
        *_patched_fan_out_fan_in(
            "fan-in",
            "fanin.after_result",
            old="PerChunkFanInPublisher",
            unguarded="UnguardedFanInPublisher",
            summary="SIGKILL on N (a getResult step per chunk) mid fan-in; N+1 (one await step "
            "per window of chunks, behind DBOS.patch) replays N's batch the old way",
            broken_summary="N+1's window fan-in without its DBOS.patch; N SIGKILLed mid fan-in",
        ),
        *_patched_fan_out_fan_in(
            "fan-out",
            "fanout.after_enqueue",
            old="PerChunkEnqueuePublisher",
            unguarded="UnguardedFanOutPublisher",
            summary="SIGKILL on N (a child enqueue per chunk) mid fan-out; N+1 (one enqueue "
            "step per window of chunks, behind DBOS.patch) replays N's batch the old way",
            broken_summary="N+1's window enqueue without its DBOS.patch; N SIGKILLed mid fan-out",
        ),
        *_patched_fan_out_fan_in(
            "plan-fan-out",
            "fanout.after_enqueue",
            old="PatchMarkedPublisher",
            unguarded="UnmarkedPlanPublisher",
            summary="SIGKILL on N (two patch markers before the window fan-out) mid fan-out; N+1 "
            "(the plan step's output names the fan-out, no markers) replays N's batch through "
            "its markers",
            broken_summary="N+1 reading the fan-out from the plan alone; N SIGKILLed mid fan-out",
        ),
        Scenario(
            name="broken/patch-before-commit",
            summary="N+1's DBOS.patch directly before the chunk transaction; N SIGKILLed after "
            "a commit, before DBOS recorded the step",
            faults=(Fault(_spec("chunk.after_commit", "crash"), "crash"),),
            chunk_concurrency=1,  # one chunk between commit and record: exactly 20 replayed
            publishers=validated,
            topics=("default", "later"),
            restart_publishers={"orders": f"{VERSIONS}:PatchBeforeCommitPublisher"},
            upgrade="patched",
            broken=True,
        ),
    ]


def _patched_fan_out_fan_in(
    name: str, failpoint: str, *, old: str, unguarded: str, summary: str, broken_summary: str
) -> list[Scenario]:
    """A change to the batch workflow's steps behind DBOS.patch: N (`old`) SIGKILLed at the
    failpoint, N+1 (the current base) replays N's batch the old way; and the broken variant,
    N+1 without the patch (`unguarded`), whose replay of that batch ends ERROR."""
    spec = _spec(failpoint, "crash")
    if failpoint == "fanin.after_result":
        # The fan-in collects results in chunk order: without a chunk held, a loaded machine can
        # commit every chunk before the 5th result is collected, leaving N+1 nothing to write
        # (no chunk_written line). One later chunk hangs on N, so N+1 always finishes it.
        spec += f";chunk.start=hang@{HELD_CHUNK}"
    faults = (Fault(spec, "crash"),)
    publishers = {"orders": f"{VERSIONS}:{old}"}
    return [
        Scenario(
            name=f"upgrade/{name}",
            summary=summary,
            faults=faults,
            publishers=publishers,
            restart_publishers={"orders": f"{VERSIONS}:LoggingEventPublisher"},
            upgrade="compatible",
        ),
        Scenario(
            name=f"broken/{name}-without-patch",
            summary=broken_summary,
            faults=faults,
            publishers=publishers,
            restart_publishers={"orders": f"{VERSIONS}:{unguarded}"},
            upgrade="compatible",
            broken=True,
        ),
    ]


def _lifecycle_scenarios() -> list[Scenario]:
    return [
        Scenario(
            name="lifecycle/cancel",
            summary="`cancel` mid-batch, SIGKILLed after its state committed: nothing more is "
            "published; run again it stops every chunk; `resume` completes the batch exactly",
            faults=(Fault("cancel.after_state=crash", "crash"),),  # the `cancel` command's
            chunk_concurrency=1,
            lifecycle="cancel",
        ),
        Scenario(
            name="lifecycle/retry",
            summary="a chunk fails for good; `retry` twice (CLI, then API) re-drives it once: "
            "the merged summary reports 0 failed",
            faults=(Fault(_spec("chunk.start", "raise"), "settled"),),
            lifecycle="retry",
        ),
    ]


def _broken_scenarios() -> list[Scenario]:
    return [
        Scenario(
            name="broken/cancel-without-guard",
            summary="a batch cancelled with `dbos workflow cancel` only (the old advice): its "
            "queued chunks publish on",
            faults=(),
            chunk_concurrency=1,
            lifecycle="cancel-dbos-only",
            broken=True,
        ),
        Scenario(
            name="broken/outage-flood",
            summary="the service logs every failed connection of a Postgres outage (no screen)",
            faults=(),
            infra="outage",
            messages=4000,
            serve=("-m", "lab.scenarios.noisy"),
            broken=True,
        ),
        _fleet(
            "broken/takeover-without-claim",
            "workers take a gone worker over without the guarded claim",
            "sigkill",
            3,
            serve=("-m", "lab.scenarios.unclaimed"),
            broken=True,
        ),
        Scenario(
            name="broken/counter-outside-tx",
            summary="counters bumped in a plain step after the ledger transaction",
            faults=(Fault("chunk.after_commit=crash@2", "crash"),),
            publishers={"orders": f"{BROKEN}:CounterOutsideTransactionPublisher"},
            chunk_concurrency=1,
            broken=True,
        ),
        Scenario(
            name="broken/in-memory-buffer",
            summary="chunks acknowledged from an in-memory buffer that is written every 4 chunks",
            # The 7th chunk starts once the 5th committed (two chunk workflows per transaction
            # slot): the 5th, and perhaps the 6th, sit acknowledged in the buffer.
            faults=(Fault("chunk.start=crash@7", "crash"),),
            publishers={"orders": f"{BROKEN}:InMemoryBufferPublisher"},
            chunk_concurrency=1,
            broken=True,
        ),
        Scenario(
            name="broken/no-idempotency-key",
            summary="side effects over HTTP without an idempotency key, SIGKILL after a delivery",
            faults=(Fault("effect.after_send=crash@5", "crash"),),
            publishers={"orders": f"{BROKEN}:NoIdempotencyKeyPublisher"},
            receiver=True,
            broken=True,
        ),
        Scenario(
            name="broken/version-change",
            summary="the restart runs a new application version (DBOS's default after any edit)",
            faults=(Fault(_spec("chunk.start", "crash"), "crash"),),
            restart_env={"APP_VERSION": "2"},
            broken=True,
        ),
    ]


def catalog() -> dict[str, Scenario]:
    scenarios = [s for point in LAB_FAILPOINTS for s in _failpoint_scenarios(point)]
    scenarios += _special_scenarios() + _takeover_scenarios() + _stuck_scenarios()
    scenarios += _infra_scenarios() + _upgrade_scenarios() + _lifecycle_scenarios()
    scenarios += _broken_scenarios() + _broken_stuck_scenarios()
    return {s.name: s for s in scenarios}


@dataclass(frozen=True)
class Batch:
    publisher: str
    topic: str
    batch_id: str
    count: int


def plan_batches(scenario: Scenario, messages: int) -> list[Batch]:
    """One batch per (publisher, topic), the messages split as evenly as they go."""
    pairs = [(p, t) for p in scenario.publishers for t in scenario.topics]
    base, extra = divmod(messages, len(pairs))
    return [
        Batch(p, t, f"{p}-{t}", base + (1 if k < extra else 0))
        for k, (p, t) in enumerate(pairs)
        if base + (1 if k < extra else 0)
    ]
