"""A sink into Redis Streams: each message is added with `XADD` by one Lua script that first
sets its dedupe key (`SET key 1 NX PX ttl`) and adds the entry only if that SET succeeded.

The script runs atomically, so a chunk sent again (a crash after the script and before the
`deliver` step's checkpoint) adds none of the messages whose dedupe key still lives: each
message is stored once if the resend comes within `dedupe_ttl_sec`. Entries get Redis's own
ids (`*`), so a late chunk is never refused the way explicit, increasing ids would refuse it.
Needs the `redis` extra: `pip install 'dbos-publishers[redis]'`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, ClassVar

import pydantic
import redis.asyncio
import redis.exceptions
import structlog

from dbos_publishers import (
    ChunkSpec,
    ConfigError,
    DeliveryOptions,
    LedgerEntry,
    PublisherNotOpenError,
    RetryPolicy,
)
from dbos_publishers.contrib._brokers import BrokerPublisher, retry_span_sec, topic_template

log = structlog.get_logger()

# KEYS[1] is the stream, KEYS[2..] the messages' dedupe keys; ARGV[1] the TTL in ms, then a
# message id and a payload per message. Returns how many entries it added.
ADD_ONCE = """
local added = 0
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'PX', ARGV[1]) then
    redis.call('XADD', KEYS[1], '*', 'message_id', ARGV[2 * i - 2], 'payload', ARGV[2 * i - 1])
    added = added + 1
  end
end
return added
"""
CONNECT_TIMEOUT_SEC = 5


class RedisStreamOptions(DeliveryOptions):
    url: pydantic.RedisDsn = pydantic.RedisDsn("redis://127.0.0.1:6379/0")  # may carry a password
    stream: Annotated[str, pydantic.AfterValidator(topic_template)]  # a key; may hold {topic}
    # How long a message id is remembered: a resend later than this adds the message again.
    dedupe_ttl_sec: Annotated[int, pydantic.Field(ge=1)] = 86_400
    dedupe_prefix: str = "dbos-publishers:dedupe:"


class RedisStreamPublisher(BrokerPublisher):
    """Adds each chunk to a Redis stream through one atomic script per chunk: exactly once
    within the broker's dedupe window (`dedupe_ttl_sec`), at least once beyond it.

    One client per process, opened by `open` on the framework's event loop (and checked with a
    PING); each entry holds `message_id` and `payload`.
    """

    Options = RedisStreamOptions
    options: RedisStreamOptions
    delivery_retry = RetryPolicy(max_attempts=5, interval_seconds=0.5, backoff_rate=2.0)
    SCRIPT: ClassVar[str] = ADD_ONCE
    _client: redis.asyncio.Redis | None = None

    @property
    def guarantee(self) -> str:
        return self.GUARANTEE.format(window_sec=self.options.dedupe_ttl_sec)

    async def open(self) -> None:
        self._require_horizon()
        url = self.options.url
        client = redis.asyncio.Redis.from_url(str(url), socket_connect_timeout=CONNECT_TIMEOUT_SEC)
        try:
            await client.ping()
        except (OSError, redis.exceptions.RedisError) as exc:
            await client.aclose()
            raise self.unreachable("Redis", url, str(exc)) from None
        self._client, self._add_once = client, client.register_script(self.SCRIPT)
        log.info("sink_opened", publisher=self.name, sink="redis_streams", guarantee=self.guarantee)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def dedupe_key(self, stream: str, entry: LedgerEntry) -> str:
        """The key that remembers a message was added: its message id, in the stream's hash
        slot (`{stream}`), so a Redis Cluster runs the script on one node."""
        return f"{self.options.dedupe_prefix}{{{stream}}}:{entry.message_id}"

    async def deliver(self, chunk: ChunkSpec, entries: Sequence[LedgerEntry]) -> None:
        """Add the chunk's messages not added before; raises if Redis refuses or is away."""
        if self._client is None:
            raise PublisherNotOpenError(f"publisher '{self.name}' delivered before open()")
        stream = self.options.stream.format(topic=chunk["topic"])
        keys = [stream, *(self.dedupe_key(stream, e) for e in entries)]
        args: list[str | int] = [self.options.dedupe_ttl_sec * 1000]
        for entry in entries:
            args += [entry.message_id, entry.payload]
        added = int(await self._add_once(keys=keys, args=args))
        if added < len(entries):
            log.info("sink_deduplicated", chunk=chunk["index"], messages=len(entries) - added)

    def _require_horizon(self) -> None:
        """Refuse a TTL shorter than the `deliver` step's own retries may take to resend."""
        span = retry_span_sec(self.delivery_policy)
        if self.options.dedupe_ttl_sec < span:
            raise ConfigError(
                f"publisher '{self.name}': dedupe_ttl_sec {self.options.dedupe_ttl_sec} is less "
                f"than the {span:g} s the deliver retries may take to resend"
            )
