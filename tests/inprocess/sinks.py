"""Broker sinks driven without DBOS: a publisher with its options and nothing else, its async
hooks awaited on the framework's loop as the service awaits them."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TypeVar

from dbos_publishers import ChunkSpec, Publisher
from dbos_publishers._hooks import awaited
from dbos_publishers.store._ledger import LedgerEntry

P = TypeVar("P", bound=Publisher)


def detached(cls: type[P], options: Mapping[str, object]) -> P:
    publisher = cls.__new__(cls)
    publisher.name = "sink"
    publisher.options = cls.validate_options(options)
    return publisher


@contextmanager
def opened(publisher: P) -> Iterator[P]:
    awaited(publisher.open())
    try:
        yield publisher
    finally:
        awaited(publisher.close())


def chunk(count: int, batch_id: str = "b", topic: str = "default") -> ChunkSpec:
    return ChunkSpec(batch_id=batch_id, topic=topic, index=0, start=0, count=count, messages=None)


def entries(count: int, batch_id: str = "b") -> list[LedgerEntry]:
    return [
        LedgerEntry(f"{batch_id}:{i}", batch_id, i, "sink", "default", f"p{i}", f"wf-{batch_id}")
        for i in range(count)
    ]


def deliver(publisher: Publisher, count: int) -> None:
    awaited(publisher.deliver(chunk(count), entries(count)))


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
