"""The process's hook loop: an awaitable hook runs to its end on one loop, in one thread of its
own, in the caller's context; its error reaches the caller unchanged."""

from __future__ import annotations

import asyncio
import threading

import pytest
import structlog

from dbos_publishers import _hooks


class Recorded:
    """What an async hook saw of where it ran."""

    def __init__(self) -> None:
        self.loops: list[asyncio.AbstractEventLoop] = []
        self.threads: list[str] = []

    async def hook(self) -> None:
        self.loops.append(asyncio.get_running_loop())
        self.threads.append(threading.current_thread().name)


def test_every_awaitable_hook_runs_on_the_one_loop_in_its_own_thread() -> None:
    recorded = Recorded()
    _hooks.awaited(recorded.hook())  # as `open`
    calls = [threading.Thread(target=_hooks.awaited, args=(recorded.hook(),)) for _ in range(3)]
    for call in calls:  # as `deliver`, from several step threads at once
        call.start()
    for call in calls:
        call.join(timeout=10)
    assert len(recorded.loops) == 4
    assert len(set(map(id, recorded.loops))) == 1  # a client made in `open` is usable later
    assert set(recorded.threads) == {_hooks.LOOP_THREAD}


def test_the_hook_runs_in_the_callers_context() -> None:
    """Logs in an async deliver keep what the step bound (publisher, workflow)."""

    async def bound() -> dict[str, object]:
        return structlog.contextvars.get_contextvars()

    with structlog.contextvars.bound_contextvars(publisher="orders"):
        seen = _hooks.run(bound())
    assert seen.get("publisher") == "orders"


def test_a_failing_hook_raises_its_own_error_in_the_caller() -> None:
    async def refused() -> None:
        raise ConnectionRefusedError("broker away")

    with pytest.raises(ConnectionRefusedError, match="broker away"):
        _hooks.awaited(refused())


def test_a_hook_waiting_on_the_loop_from_the_loop_is_refused() -> None:
    """It would wait on itself for ever."""

    async def nested() -> None:
        _hooks.awaited(asyncio.sleep(0))

    with pytest.raises(RuntimeError, match="would wait on itself"):
        _hooks.awaited(nested())
