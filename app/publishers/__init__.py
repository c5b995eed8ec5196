"""Publisher classes: the framework's base class and the reference service's publishers."""

from app.publishers.base import BatchRequest, BatchSummary, ChunkOutcome, ChunkSpec, Publisher

__all__ = ["BatchRequest", "BatchSummary", "ChunkOutcome", "ChunkSpec", "Publisher"]
