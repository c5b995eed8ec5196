"""WebhookPublisher: one HTTP client per process, each chunk POSTed once with its message ids as
idempotency keys, against the lab's receiver."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from dbos_publishers import ChunkSpec, PublisherNotOpenError
from dbos_publishers.contrib.webhook import WebhookOptions, WebhookPublisher
from dbos_publishers.store._ledger import LedgerEntry
from lab.publishers.broken import NoIdempotencyKeyPublisher
from lab.scenarios.receiver import Receiver
from tests.inprocess.conftest import StartService

WEBHOOK = "dbos_publishers.contrib.webhook:WebhookPublisher"
MESSAGES = 30  # three chunks of 10


def declared(endpoint: str, extra: str = "") -> str:
    return (
        f'[[publishers]]\nname = "hooks"\nclass = "{WEBHOOK}"\nchunk_size = 10\n'
        f'[publishers.options]\nendpoint = "{endpoint}"\n{extra}'
    )


class CountedClient(httpx.Client):
    """httpx.Client that remembers every instance made and every POST sent through it."""

    made: list[CountedClient] = []  # noqa: RUF012 - a test-scoped registry, reset per test

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.posts = 0
        CountedClient.made.append(self)

    def post(self, *args: Any, **kwargs: Any) -> httpx.Response:
        self.posts += 1
        return super().post(*args, **kwargs)


@pytest.fixture
def counted_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[CountedClient]]:
    CountedClient.made = []
    monkeypatch.setattr(httpx, "Client", CountedClient)  # the module the publisher calls
    yield CountedClient.made


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def test_each_message_is_delivered_once_through_one_client(
    start_service: StartService, receiver: Receiver, counted_clients: list[CountedClient]
) -> None:
    service = start_service(declared(receiver.url, 'headers = { X-Tenant = "t1" }\n'))
    summary = service.publish("hooks", MESSAGES)
    assert summary["published"] == MESSAGES
    stats = receiver.stats()
    assert (stats.attempts, stats.effects, stats.deduplicated) == (MESSAGES, MESSAGES, 0)
    (client,) = counted_clients  # one for the process, opened by the runtime before launch
    assert client.posts == 3  # one per chunk, concurrent chunks sharing it
    assert client.headers["X-Tenant"] == "t1"
    assert service.ledger_state({"b1": MESSAGES}).report.ok
    service.stop()
    assert client.is_closed


def test_the_effect_failpoint_fires_after_the_receiver_applied_the_chunk(
    start_service: StartService, receiver: Receiver
) -> None:
    """A permanent error right after a delivery fails that chunk without another attempt; the
    receiver already has it (the window in which a crash would deliver it again)."""
    service = start_service(declared(receiver.url), failpoint_spec="effect.after_send=raise@1")
    summary = service.publish("hooks", MESSAGES)
    assert (summary["published"], summary["failed"]) == (MESSAGES - 10, 10)
    (failed,) = summary["failed_chunks"]
    assert failed["error"] == "FailpointError: failpoint effect.after_send raised"
    assert receiver.stats().attempts == MESSAGES  # the failed chunk was not sent twice
    assert receiver.stats().effects == MESSAGES


# ---- delivery alone, without DBOS ------------------------------------------------------------


def entries(batch_id: str, count: int) -> list[LedgerEntry]:
    return [
        LedgerEntry(f"{batch_id}:{i}", batch_id, i, "hooks", "t", f"p{i}", f"batch-{batch_id}")
        for i in range(count)
    ]


CHUNK = ChunkSpec(batch_id="b", topic="t", index=0, start=0, count=3, messages=None)


def detached(cls: type[WebhookPublisher], endpoint: str) -> WebhookPublisher:
    """A publisher with its options and nothing else: delivery needs no DBOS registration."""
    publisher = cls.__new__(cls)
    publisher.name = "hooks"
    options = cls.validate_options({"endpoint": endpoint})
    assert isinstance(options, WebhookOptions)
    publisher.options = options
    return publisher


@pytest.mark.parametrize(
    ("cls", "effects"), [(WebhookPublisher, 3), (NoIdempotencyKeyPublisher, 6)]
)
def test_a_repeated_delivery_is_deduplicated_only_with_keys(
    receiver: Receiver, cls: type[WebhookPublisher], effects: int
) -> None:
    publisher = detached(cls, receiver.url)
    publisher.open()
    try:
        publisher.deliver(CHUNK, entries("b", 3))
        publisher.deliver(CHUNK, entries("b", 3))
    finally:
        publisher.close()
    assert receiver.stats().attempts == 6
    assert receiver.stats().effects == effects


def test_a_refused_delivery_raises(receiver: Receiver) -> None:
    publisher = detached(WebhookPublisher, receiver.url.replace("/deliveries", "/other"))
    publisher.open()
    try:
        with pytest.raises(httpx.HTTPStatusError, match="404"):
            publisher.deliver(CHUNK, entries("b", 1))
    finally:
        publisher.close()
    assert receiver.stats().attempts == 0


def test_a_delivery_before_open_fails_at_once_and_is_not_retried(receiver: Receiver) -> None:
    publisher = detached(WebhookPublisher, receiver.url)
    with pytest.raises(PublisherNotOpenError, match="publisher 'hooks' delivered before open"):
        publisher.deliver(CHUNK, entries("b", 1))
    assert not publisher.should_retry_delivery(PublisherNotOpenError("x"))
    assert publisher.should_retry_delivery(httpx.ConnectError("refused"))
    assert receiver.stats().attempts == 0
