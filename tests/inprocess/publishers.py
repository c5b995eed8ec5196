"""Publisher classes the in-process tests declare: deliveries counted per chunk, failing on cue."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import ClassVar

import redis.asyncio

from dbos_publishers import ChunkSpec, DeliveryOptions, RetryPolicy
from dbos_publishers.contrib.events import EventPublisher
from dbos_publishers.contrib.jetstream import JetStreamPublisher
from dbos_publishers.contrib.redis_streams import RedisStreamPublisher
from dbos_publishers.store._ledger import LedgerEntry

# (publisher, batch id, chunk index) -> delivery attempts; tests clear it.
ATTEMPTS: Counter[tuple[str, str, int]] = Counter()
_lock = threading.Lock()


class DeliveryRefusedError(ConnectionError):
    """The stand-in for a downstream system that is not answering."""


class CountingPublisher(EventPublisher):
    """Counts delivery attempts per chunk and refuses the first `refusals` of each."""

    Options = DeliveryOptions  # takes a `delivery_retry` option
    delivery_retry = RetryPolicy(max_attempts=3, interval_seconds=0.01, backoff_rate=1.0)
    refusals: ClassVar[int] = 0

    def deliver(self, chunk: ChunkSpec, entries: Sequence[LedgerEntry]) -> None:
        with _lock:
            key = (self.name, chunk["batch_id"], chunk["index"])
            ATTEMPTS[key] += 1
            attempt = ATTEMPTS[key]
        if attempt <= self.refusals:
            raise DeliveryRefusedError(f"attempt {attempt} refused")


class FlakyPublisher(CountingPublisher):
    """Each chunk's delivery is refused twice, then accepted."""

    refusals = 2


class OnceRefusedPublisher(CountingPublisher):
    """Each chunk's delivery is refused once, then accepted."""

    refusals = 1


class DownPublisher(CountingPublisher):
    """Every delivery is refused."""

    refusals = 1_000


# Chunks of SlowPublisher: how many were built and not yet committed, how many were inside a
# commit (a transaction slot), now and at the most; tests clear it.
IN_FLIGHT: Counter[str] = Counter()
PEAK: Counter[str] = Counter()
SLOW_COMMIT_SEC = 0.3


class SlowPublisher(EventPublisher):
    """Each commit takes SLOW_COMMIT_SEC more; counts chunks in flight and in a commit."""

    def bodies(self, chunk: ChunkSpec) -> Sequence[str]:
        _enter("built")
        return super().bodies(chunk)

    def _commit_chunk(self, entries: Sequence[LedgerEntry]) -> int:
        _enter("committing")
        try:
            time.sleep(SLOW_COMMIT_SEC)
            return super()._commit_chunk(entries)
        finally:
            with _lock:
                IN_FLIGHT["committing"] -= 1
                IN_FLIGHT["built"] -= 1


def _enter(what: str) -> None:
    with _lock:
        IN_FLIGHT[what] += 1
        PEAK[what] = max(PEAK[what], IN_FLIGHT[what])


# ---- async hooks and broker sinks -------------------------------------------------------------


class AsyncRedisOptions(DeliveryOptions):
    url: str
    stream: str


class AsyncRedisPublisher(EventPublisher):
    """What a new user writes first (issue 22): an `async def deliver` that XADDs each message
    with redis.asyncio, its client made by an `async def open` on the framework's loop."""

    Options = AsyncRedisOptions
    options: AsyncRedisOptions
    client: redis.asyncio.Redis | None = None

    async def open(self) -> None:
        self.client = redis.asyncio.Redis.from_url(self.options.url)
        await self.client.ping()

    async def close(self) -> None:
        assert self.client is not None
        await self.client.aclose()
        self.client = None

    async def deliver(self, chunk: ChunkSpec, entries: Sequence[LedgerEntry]) -> None:
        assert self.client is not None
        async with self.client.pipeline(transaction=False) as pipe:
            for entry in entries:
                pipe.xadd(self.options.stream, {"message_id": entry.message_id})
            await pipe.execute()


class NoMessageIdJetStreamPublisher(JetStreamPublisher):
    """Broken on purpose: publishes without `Nats-Msg-Id`, so JetStream cannot deduplicate."""

    def message_headers(self, entry: LedgerEntry) -> dict[str, str]:
        return {}


class UnkeyedRedisStreamPublisher(RedisStreamPublisher):
    """Broken on purpose: a dedupe key that is new on every attempt (not the message id), so
    the script's SET NX always succeeds and a resend adds every message again."""

    def dedupe_key(self, stream: str, entry: LedgerEntry) -> str:
        return f"{super().dedupe_key(stream, entry)}:{uuid.uuid4().hex}"
