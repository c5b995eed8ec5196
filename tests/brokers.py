"""The shared brokers the sink tests use (NATS JetStream and Redis on loopback, as in CI): a
stream or key of the test's own, deleted after it, and its contents read back per message id.

An unreachable broker fails the test (never a skip): the sinks' guarantees are only claimed
where a real broker checked them. The shared servers are never stopped or reconfigured.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import nats
import pytest
import redis
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

NATS_URL = os.environ.get("TEST_NATS_URL", "nats://127.0.0.1:4222")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DEFAULT_WINDOW_SEC = 30.0
T = TypeVar("T")


@dataclass(frozen=True)
class JetStreamStream:
    """A stream of the test's own; `subject` is captured by it."""

    name: str
    subject: str
    window_sec: float

    def message_ids(self) -> Counter[str]:
        """How many times the stream holds each message id (its Nats-Msg-Id header)."""
        return _on_jetstream(self._message_ids)

    async def _message_ids(self, jetstream: JetStreamContext) -> Counter[str]:
        info = await jetstream.stream_info(self.name)
        ids: Counter[str] = Counter()
        for sequence in range(info.state.first_seq, info.state.last_seq + 1):
            message = await jetstream.get_msg(self.name, sequence)
            ids[(message.headers or {}).get("Nats-Msg-Id", "(none)")] += 1
        return ids


@dataclass(frozen=True)
class RedisStream:
    """A stream key of the test's own."""

    key: str

    def message_ids(self) -> Counter[str]:
        """How many times the stream holds each message id (its `message_id` field)."""
        with redis.Redis.from_url(REDIS_URL) as client:
            entries = client.xrange(self.key)
        return Counter(fields[b"message_id"].decode() for _, fields in entries)


@pytest.fixture
def jetstream_stream(request: pytest.FixtureRequest) -> Iterator[JetStreamStream]:
    """A new stream (duplicate window DEFAULT_WINDOW_SEC, or the test's indirect param)."""
    name = f"TEST_{uuid.uuid4().hex[:12].upper()}"
    window = float(getattr(request, "param", DEFAULT_WINDOW_SEC))
    stream = JetStreamStream(name, f"{name.lower()}.>", window)
    config = StreamConfig(name=name, subjects=[stream.subject], duplicate_window=window)
    _on_jetstream(lambda jetstream: jetstream.add_stream(config))
    yield stream
    _on_jetstream(lambda jetstream: jetstream.delete_stream(name))


@pytest.fixture
def redis_stream() -> Iterator[RedisStream]:
    """A new stream key; it and every dedupe key naming it are deleted after the test."""
    stream = RedisStream(f"test-stream-{uuid.uuid4().hex[:12]}")
    _require_redis()
    yield stream
    with redis.Redis.from_url(REDIS_URL) as client:
        dedupe_keys = list(client.scan_iter(match=f"*{{{stream.key}}}*", count=1000))
        client.delete(stream.key, *dedupe_keys)


def _on_jetstream(action: Callable[[JetStreamContext], Awaitable[T]]) -> T:
    async def connected() -> T:
        try:
            connection = await nats.connect(
                NATS_URL, connect_timeout=3, max_reconnect_attempts=1, error_cb=_quiet
            )
        except Exception as exc:
            pytest.fail(f"the sink tests need NATS JetStream at {NATS_URL}: {exc!r}")
        try:
            return await action(connection.jetstream())
        finally:
            await connection.close()

    return asyncio.run(connected())


async def _quiet(error: Exception) -> None:
    """nats-py logs a traceback per failed attempt by default; the failure is reported once."""


def _require_redis() -> None:
    try:
        with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3) as client:
            client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.fail(f"the sink tests need Redis at {REDIS_URL}: {exc}")
