"""Named failpoints: places in the publish path where a crash, error, delay or hang is injected.

Spec syntax (the APP_FAILPOINTS environment variable), entries separated by ';':

    NAME=ACTION[@TRIGGER]

    ACTION   crash | raise | raise-transient | delay(MS) | hang
    TRIGGER  N (the Nth hit, 1-based; the default is 1) | every | pPROB (each hit with
             probability PROB in (0, 1], drawn from APP_FAILPOINT_SEED)

Example: APP_FAILPOINTS="chunk.before_commit=crash@3;fanin.after_result=delay(50)@every"
"""

from __future__ import annotations

import os
import random
import re
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, assert_never

import structlog

from dbos_publishers._errors import BadInputError

log = structlog.get_logger()

ActionKind = Literal["crash", "raise", "raise-transient", "delay", "hang"]


class FailpointSpecError(BadInputError):
    """APP_FAILPOINTS could not be parsed; the message says which entry and why."""


class FailpointError(RuntimeError):
    """A permanent error raised by a failpoint."""


class TransientFailpointError(FailpointError):
    """A failpoint error that a retry policy is expected to absorb."""


CATALOG: dict[str, str] = {
    "batch.submit": "client side, before a batch is enqueued",
    "batch.start": "a batch workflow starts (or is replayed)",
    "fanout.after_enqueue": "after chunks are enqueued in the fan-out, once per chunk (all of "
    "a window's after its one insert)",
    "chunk.start": "a chunk workflow starts (or is replayed)",
    "chunk.before_commit": "inside the chunk transaction, after its writes, before commit",
    "chunk.after_commit": "after the chunk transaction commits, before DBOS checkpoints the step",
    "fanin.after_result": "after each chunk result is collected in the fan-in",
    "batch.before_complete": "after the fan-in, before the batch workflow returns",
    "service.recovery": "in the service, right after launch while pending work is recovered",
    "upgrade.after_move": "`upgrade`, after each workflow's move has committed",
}

_SPEC_ENTRY = re.compile(
    r"^(?P<name>[a-z][a-z0-9_.-]*)=(?P<action>crash|raise-transient|raise|hang|delay\((?P<ms>\d+)\))"
    r"(?:@(?P<trigger>\d+|every|p(?P<prob>[0-9.]+)))?$"
)


@dataclass(frozen=True)
class Trigger:
    nth: int | None = 1
    probability: float | None = None

    def fires(self, hit: int, rng: random.Random) -> bool:
        if self.probability is not None:
            return rng.random() < self.probability
        return self.nth is None or hit == self.nth


@dataclass(frozen=True)
class Failpoint:
    name: str
    action: ActionKind
    trigger: Trigger
    delay_ms: int = 0


def declare(name: str, description: str) -> None:
    """Register a failpoint of your own publisher so specs may name it."""
    if not re.fullmatch(r"[a-z][a-z0-9_.-]*", name):
        raise ValueError(f"failpoint name {name!r} is invalid")
    CATALOG.setdefault(name, description)


def parse(spec: str) -> dict[str, Failpoint]:
    """Parse a spec strictly; an unknown name or a malformed entry is refused with the reason."""
    points: dict[str, Failpoint] = {}
    for raw in filter(None, (part.strip() for part in spec.split(";"))):
        point = _parse_entry(raw)
        if point.name in points:
            raise FailpointSpecError(f"APP_FAILPOINTS: '{point.name}' appears twice")
        points[point.name] = point
    return points


def _parse_entry(raw: str) -> Failpoint:
    match = _SPEC_ENTRY.match(raw)
    if match is None:
        raise FailpointSpecError(
            f"APP_FAILPOINTS: cannot parse '{raw}' (expected NAME=crash|raise|raise-transient|"
            "delay(MS)|hang[@N|@every|@pPROB])"
        )
    name = match["name"]
    if name not in CATALOG:
        raise FailpointSpecError(
            f"APP_FAILPOINTS: unknown failpoint '{name}' (known: {', '.join(sorted(CATALOG))})"
        )
    action_text = match["action"]
    action: ActionKind = "delay" if action_text.startswith("delay") else action_text  # type: ignore[assignment]
    return Failpoint(name, action, _trigger(match, raw), int(match["ms"] or 0))


def _trigger(match: re.Match[str], raw: str) -> Trigger:
    text = match["trigger"]
    if text is None:
        return Trigger()
    if text == "every":
        return Trigger(nth=None)
    if match["prob"] is not None:
        try:
            probability = float(match["prob"])
        except ValueError:
            probability = -1.0
        if not 0 < probability <= 1:
            raise FailpointSpecError(f"APP_FAILPOINTS: '{raw}': probability must be in (0, 1]")
        return Trigger(nth=None, probability=probability)
    if int(text) < 1:
        raise FailpointSpecError(f"APP_FAILPOINTS: '{raw}': the hit number starts at 1")
    return Trigger(nth=int(text))


class _Armed:
    def __init__(self, points: Mapping[str, Failpoint], seed: int) -> None:
        self.points = dict(points)
        self.hits: dict[str, int] = dict.fromkeys(points, 0)
        self.fired: dict[str, int] = dict.fromkeys(points, 0)
        self.rng = random.Random(seed)  # noqa: S311 - reproducible fault schedules, not secrets
        self.lock = threading.Lock()

    def should_fire(self, name: str) -> Failpoint | None:
        point = self.points.get(name)
        if point is None:
            return None
        with self.lock:
            self.hits[name] += 1
            if not point.trigger.fires(self.hits[name], self.rng):
                return None
            self.fired[name] += 1
            return point


_armed: _Armed | None = None


def arm(spec: str, seed: int = 0) -> dict[str, Failpoint]:
    """Arm the failpoints a spec names (an empty spec disarms all)."""
    global _armed  # noqa: PLW0603 - one process-wide switchboard, set once at start-up
    points = parse(spec)
    _armed = _Armed(points, seed) if points else None
    return points


def failpoint(name: str) -> None:
    """Mark a failpoint; does nothing (one global read) unless a spec armed it."""
    if _armed is None:
        return
    point = _armed.should_fire(name)
    if point is not None:
        _fire(point)


def fired_counts() -> dict[str, int]:
    return dict(_armed.fired) if _armed is not None else {}


def _fire(point: Failpoint) -> None:
    log.warning("failpoint_fired", failpoint=point.name, action=point.action)
    match point.action:
        case "crash":
            _crash()
        case "raise":
            raise FailpointError(f"failpoint {point.name} raised")
        case "raise-transient":
            raise TransientFailpointError(f"failpoint {point.name} raised (transient)")
        case "delay":
            time.sleep(point.delay_ms / 1000)
        case "hang":
            threading.Event().wait()
        case _:
            assert_never(point.action)


def _crash() -> None:
    """Die the way a power cut or the OOM killer would: SIGKILL, no cleanup, no atexit."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
