"""A publisher with a side effect outside the database: each chunk is also POSTed to an endpoint.

The POST is a DBOS step, so a crash after it and before its checkpoint sends it again: delivery
is at least once. Each message carries its message id as an idempotency key, so a receiver that
deduplicates by key applies each message exactly once.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping
from urllib.parse import urlsplit

from dbos import DBOS

from app import failpoints
from app.config import ConfigError
from app.failpoints import failpoint
from app.ledger import LedgerEntry
from app.publishers.events import EventPublisher

DELIVERY_TIMEOUT_SEC = 10

failpoints.declare(
    "effect.after_send", "after a side effect was delivered, before its step is checkpointed"
)


class WebhookPublisher(EventPublisher):
    """Delivers each chunk to the `endpoint` option in one POST, then records it exactly once."""

    @classmethod
    def validate_options(cls, options: Mapping[str, object]) -> None:
        unknown = sorted(set(options) - {"endpoint"})
        if unknown:
            raise ConfigError(f"{cls.__name__} takes only 'endpoint' (got: {', '.join(unknown)})")
        endpoint = options.get("endpoint")
        if not isinstance(endpoint, str) or not _is_http_url(endpoint):
            raise ConfigError(
                f"{cls.__name__} needs option endpoint = an http(s) URL, not {endpoint!r}"
            )

    @property
    def endpoint(self) -> str:
        return str(self.options["endpoint"])

    def idempotency_key(self, entry: LedgerEntry) -> str | None:
        """The key the receiver deduplicates by: the message id, the same on every attempt."""
        return entry.message_id

    def commit_chunk(self, entries: list[LedgerEntry]) -> int:
        DBOS.run_step({"name": "deliver"}, self._deliver, entries)
        return super().commit_chunk(entries)

    def _deliver(self, entries: list[LedgerEntry]) -> int:
        """POST the chunk's messages; raises on a connection error or a non-2xx answer."""
        messages = [{"key": self.idempotency_key(e), "payload": e.payload} for e in entries]
        request = urllib.request.Request(  # noqa: S310 - validate_options allows only http(s)
            self.endpoint,
            data=json.dumps({"messages": messages}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=DELIVERY_TIMEOUT_SEC) as response:  # noqa: S310 - as above
            response.read()
        failpoint("effect.after_send")
        return len(entries)


def _is_http_url(text: str) -> bool:
    parts = urlsplit(text)
    return parts.scheme in ("http", "https") and bool(parts.hostname)
