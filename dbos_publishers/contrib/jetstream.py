"""A sink into NATS JetStream: each message is published with its message id as `Nats-Msg-Id`,
and the chunk is recorded only once JetStream acknowledged every message.

A crash after the acks and before the `deliver` step's checkpoint publishes the chunk again on
restart; JetStream drops a message whose id it stored within the stream's duplicate window, so
the stream holds each message once if the resend comes within that window (120 s by default).
Needs the `nats` extra: `pip install 'dbos-publishers[nats]'`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated

import nats.errors
import nats.js.errors
import pydantic
import structlog
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

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

MESSAGE_ID_HEADER = "Nats-Msg-Id"  # JetStream's own deduplication key
CONNECT_TIMEOUT_SEC = 5


class JetStreamOptions(DeliveryOptions):
    url: pydantic.NatsDsn = pydantic.NatsDsn("nats://127.0.0.1:4222")  # may carry user:password
    stream: Annotated[str, pydantic.Field(pattern=r"^[^\s.*>]+$")]  # must exist, with a window
    subject: Annotated[str, pydantic.AfterValidator(topic_template)]  # may hold {topic}
    # The least duplicate window the stream may have: `open` refuses a stream with less.
    dedupe_window_sec: pydantic.PositiveFloat = 120.0
    ack_timeout_sec: pydantic.PositiveFloat = 10.0  # for all of a chunk's acks together


class JetStreamPublisher(BrokerPublisher):
    """Publishes each chunk to JetStream and awaits every ack: exactly once within the broker's
    dedupe window (the stream's duplicate window, read at `open`), at least once beyond it.

    One connection per process, opened by `open` on the framework's event loop. A chunk's
    messages are written one after another, in order, then their acks awaited together.
    """

    Options = JetStreamOptions
    options: JetStreamOptions
    delivery_retry = RetryPolicy(max_attempts=5, interval_seconds=0.5, backoff_rate=2.0)
    duplicate_window_sec: float | None = None  # the stream's, read at `open`
    _connection: NatsClient | None = None
    _jetstream: JetStreamContext | None = None

    @property
    def guarantee(self) -> str:
        if self.duplicate_window_sec is None:
            return "exactly once within the stream's duplicate window (read when opened)"
        return self.GUARANTEE.format(window_sec=self.duplicate_window_sec)

    async def open(self) -> None:
        connection = await self._connect()
        try:
            window = await self._duplicate_window(connection.jetstream())
        except BaseException:
            await connection.close()
            raise
        self._connection, self._jetstream = connection, connection.jetstream()
        self.duplicate_window_sec = window
        self._sending = asyncio.Lock()
        log.info("sink_opened", publisher=self.name, sink="jetstream", guarantee=self.guarantee)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = self._jetstream = None

    def message_headers(self, entry: LedgerEntry) -> dict[str, str]:
        """The headers of one message: its message id, the key JetStream deduplicates by."""
        return {MESSAGE_ID_HEADER: entry.message_id}

    async def deliver(self, chunk: ChunkSpec, entries: Sequence[LedgerEntry]) -> None:
        """Publish the chunk's messages and await their acks; raises on a refusal or timeout."""
        jetstream = self._opened()
        subject = self.options.subject.format(topic=chunk["topic"])
        async with self._sending:  # one chunk's messages at a time, so they stay in order
            acks = [
                await jetstream.publish_async(
                    subject,
                    e.payload.encode(),
                    stream=self.options.stream,
                    headers=self.message_headers(e),
                )
                for e in entries
            ]
        answers = await asyncio.wait_for(asyncio.gather(*acks), self.options.ack_timeout_sec)
        if duplicates := sum(1 for ack in answers if ack.duplicate):
            log.info("sink_deduplicated", chunk=chunk["index"], messages=duplicates)

    async def _connect(self) -> NatsClient:
        """A connection that reconnects for ever once made; the first one must come within
        CONNECT_TIMEOUT_SEC, or `open` fails in one line."""
        url, connection = self.options.url, NatsClient()
        try:
            await asyncio.wait_for(
                connection.connect(
                    str(url), error_cb=self._connection_error, max_reconnect_attempts=-1
                ),
                CONNECT_TIMEOUT_SEC,
            )
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            await connection.close()
            reason = str(exc) or f"no connection within {CONNECT_TIMEOUT_SEC} s"
            raise self.unreachable("NATS", url, reason) from None
        return connection

    async def _connection_error(self, error: Exception) -> None:
        """nats-py's errors as one line each (its default logs a traceback per attempt)."""
        log.warning("sink_connection_error", publisher=self.name, error=str(error) or repr(error))

    async def _duplicate_window(self, jetstream: JetStreamContext) -> float:
        """The stream's duplicate window, refused in one line when shorter than the horizon."""
        stream = self.options.stream
        try:
            info = await jetstream.stream_info(stream)
        except nats.js.errors.NotFoundError:
            raise ConfigError(
                f"publisher '{self.name}': JetStream has no stream '{stream}'"
            ) from None
        window = float(info.config.duplicate_window or 0)
        horizon = max(self.options.dedupe_window_sec, retry_span_sec(self.delivery_policy))
        if window < horizon:
            raise ConfigError(
                f"publisher '{self.name}': stream '{stream}' deduplicates for {window:g} s, less "
                f"than the {horizon:g} s this publisher needs (dedupe_window_sec, retries)"
            )
        return window

    def _opened(self) -> JetStreamContext:
        if self._jetstream is None:
            raise PublisherNotOpenError(f"publisher '{self.name}' delivered before open()")
        return self._jetstream
