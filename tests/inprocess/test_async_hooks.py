"""An `async def deliver` is awaited: issue 22's silent loss (every message 'published', none in
Redis) is gone. Its client is made by an `async def open` and closed by an `async def close`,
on the one loop the framework runs them all on."""

from __future__ import annotations

from collections.abc import Awaitable

import pytest

from dbos_publishers import _publisher
from tests.brokers import REDIS_URL, RedisStream
from tests.inprocess.conftest import StartService
from tests.inprocess.publishers import AsyncRedisPublisher

MESSAGES = 200  # four chunks of 50, delivered concurrently on the one loop


def declared(stream: RedisStream) -> str:
    return (
        '[[publishers]]\nname = "asyncredis"\n'
        'class = "tests.inprocess.publishers:AsyncRedisPublisher"\nchunk_size = 50\n'
        f'[publishers.options]\nurl = "{REDIS_URL}"\nstream = "{stream.key}"\n'
    )


def left_unawaited(result: Awaitable[None] | None) -> None:
    """The seam before this change: the coroutine is dropped (closed, so no warning)."""
    close = getattr(result, "close", None)
    if close is not None:
        close()


@pytest.mark.parametrize("awaited", [True, False], ids=["awaited", "broken-left-unawaited"])
def test_an_async_deliver_puts_every_message_into_redis(
    start_service: StartService,
    redis_stream: RedisStream,
    monkeypatch: pytest.MonkeyPatch,
    awaited: bool,
) -> None:
    if not awaited:
        monkeypatch.setattr(_publisher, "awaited", left_unawaited)
    service = start_service(declared(redis_stream))
    summary = service.publish("asyncredis", MESSAGES)
    assert (summary["published"], summary["failed"]) == (MESSAGES, 0)  # either way: the trap
    stored = redis_stream.message_ids()
    expected = {f"b1:{position}": 1 for position in range(MESSAGES)}
    if awaited:
        assert stored == expected
    else:  # the check above catches the silent loss
        assert stored != expected
        assert sum(stored.values()) == 0
    publisher = service.rt.publishers["asyncredis"]
    assert isinstance(publisher, AsyncRedisPublisher)
    assert publisher.client is not None  # made by the async open
    service.stop()
    assert publisher.client is None  # the async close ran to its end
