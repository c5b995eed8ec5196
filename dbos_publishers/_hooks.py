"""How the framework calls a publisher's hooks: plain ones from the worker thread that runs the
step, and `async def open`, `close` and `deliver` awaited on the process's one event loop.

Every broker client a publisher reaches for (nats-py, redis.asyncio, aio-pika, aiokafka) is
asyncio, and its connection belongs to the loop it was opened on: so one loop per process, in
its own daemon thread, started when the first awaitable hook needs it, runs every awaitable
hook; a client `open` made lives on the loop `deliver` and `close` run on. A coroutine function
is refused at start for every other hook, which the framework calls and uses synchronously.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import os
import threading
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# Hooks a subclass may override. The first three may be `async def`: the framework awaits them.
AWAITED_HOOKS = ("open", "close", "deliver")
SYNC_HOOKS = ("delivery_policy", "should_retry_delivery", "bodies", "body", "write_chunk")
LOOP_THREAD = "dbos-publishers-hooks"

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_loop_thread: threading.Thread | None = None


def awaited(result: Awaitable[None] | None) -> None:
    """Wait for what an awaitable hook returned (its coroutine, run on the process's loop), so
    no call of `open`, `close` or `deliver` leaves one unawaited, whichever way it was made."""
    if inspect.isawaitable(result):
        run(_as_coroutine(result))


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` on the process's loop and wait for its result in this thread, in a copy
    of this thread's context (so logs keep the publisher and workflow bound by the caller)."""
    loop = _running_loop()
    if threading.current_thread() is _loop_thread:
        coroutine.close()
        raise RuntimeError("a hook called from the hook loop itself would wait on itself")
    done: concurrent.futures.Future[T] = concurrent.futures.Future()
    context = contextvars.copy_context()
    loop.call_soon_threadsafe(_start, loop, coroutine, context, done)
    return done.result()


def unawaited_hook(cls: type) -> str | None:
    """One line naming a hook `cls` defines as `async def` that the framework does not await:
    called as a plain function, it would return a coroutine nobody runs, and its work would
    silently never happen."""
    for hook in SYNC_HOOKS:
        function = getattr(cls, hook, None)
        if isinstance(function, property):
            function = function.fget
        if inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function):
            return (
                f"{cls.__name__}.{hook} is async def, and the framework calls it without awaiting "
                f"it: define it with def (only {', '.join(AWAITED_HOOKS)} may be async def)"
            )
    return None


async def _as_coroutine(awaitable: Awaitable[None]) -> None:
    await awaitable


def _start(
    loop: asyncio.AbstractEventLoop,
    coroutine: Coroutine[Any, Any, T],
    context: contextvars.Context,
    done: concurrent.futures.Future[T],
) -> None:
    task = loop.create_task(coroutine, context=context)
    task.add_done_callback(lambda finished: _settle(finished, done))


def _settle(task: asyncio.Task[T], done: concurrent.futures.Future[T]) -> None:
    if task.cancelled():
        done.cancel()
    elif (error := task.exception()) is not None:
        done.set_exception(error)
    else:
        done.set_result(task.result())


def _running_loop() -> asyncio.AbstractEventLoop:
    """The process's hook loop, started on first use in a daemon thread: it never holds up an
    exit, and the clients on it are closed by `close` before the process stops."""
    global _loop, _loop_thread  # noqa: PLW0603 - one loop per process is the point
    with _lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            _loop_thread = threading.Thread(target=_loop.run_forever, name=LOOP_THREAD, daemon=True)
            _loop_thread.start()
        return _loop


def _forget_loop() -> None:
    """A forked child has the parent's loop object but not its thread: it starts its own."""
    global _loop, _loop_thread, _lock
    _loop, _loop_thread, _lock = None, None, threading.Lock()


os.register_at_fork(after_in_child=_forget_loop)
