"""A publisher with a side effect outside the database: each chunk is also POSTed to an endpoint.

The POST is the `deliver` step, so a crash after it and before its checkpoint sends it again:
delivery is at least once. Each message carries its message id as an idempotency key, so a
receiver that deduplicates by key applies each message exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx
import pydantic

from dbos_publishers import (
    ChunkSpec,
    DeliveryOptions,
    LedgerEntry,
    PublisherNotOpenError,
    RetryPolicy,
)
from dbos_publishers.contrib.events import EventPublisher


class WebhookOptions(DeliveryOptions):
    endpoint: pydantic.HttpUrl  # http(s) only
    timeout: pydantic.PositiveFloat = 10.0  # seconds, per request
    headers: dict[str, str] = pydantic.Field(default_factory=dict)  # sent with every POST


class WebhookPublisher(EventPublisher):
    """Delivers each chunk to the `endpoint` option in one POST, then records it exactly once.

    One HTTP client per process, opened by `open` and closed by `close`; a `deliver` in a
    process that never opened the publisher fails at once (PublisherNotOpenError), unretried.
    """

    Options = WebhookOptions
    options: WebhookOptions
    delivery_retry = RetryPolicy(max_attempts=5, interval_seconds=0.5, backoff_rate=2.0)
    _client: httpx.Client | None = None

    def open(self) -> None:
        self._client = httpx.Client(timeout=self.options.timeout, headers=self.options.headers)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def idempotency_key(self, entry: LedgerEntry) -> str | None:
        """The key the receiver deduplicates by: the message id, the same on every attempt."""
        return entry.message_id

    def deliver(self, chunk: ChunkSpec, entries: Sequence[LedgerEntry]) -> None:
        """POST the chunk's messages; raises on a connection error or a non-2xx answer."""
        if self._client is None:
            raise PublisherNotOpenError(f"publisher '{self.name}' delivered before open()")
        messages = [{"key": self.idempotency_key(e), "payload": e.payload} for e in entries]
        response = self._client.post(str(self.options.endpoint), json={"messages": messages})
        response.raise_for_status()
