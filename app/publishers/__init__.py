"""Publisher classes: the framework's base class and the reference service's publishers."""

from app.publishers.base import BatchRequest, BatchSummary, ChunkOutcome, ChunkSpec, Publisher
from app.publishers.options import (
    DeliveryOptions,
    PublisherNotOpenError,
    PublisherOptions,
    RetryPolicy,
)

__all__ = [
    "BatchRequest",
    "BatchSummary",
    "ChunkOutcome",
    "ChunkSpec",
    "DeliveryOptions",
    "Publisher",
    "PublisherNotOpenError",
    "PublisherOptions",
    "RetryPolicy",
]
