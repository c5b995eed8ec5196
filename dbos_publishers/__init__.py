"""dbos-publishers: stateful, class-based publisher services on DBOS, with local and global
counters that are exact after any crash.

The public API is what `__all__` lists; every other module is private (`_name.py`). Names load
on first use, so `dbos-publishers --help` and `import dbos_publishers` stay cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dbos_publishers._client import Client
    from dbos_publishers._config import Settings
    from dbos_publishers._errors import (
        AppError,
        BadInputError,
        ConfigError,
        ConflictError,
        NotFoundError,
        StateError,
        UnreachableDatabaseError,
    )
    from dbos_publishers._failpoints import FailpointError, TransientFailpointError, failpoint
    from dbos_publishers._failpoints import declare as declare_failpoint
    from dbos_publishers._options import (
        DeliveryOptions,
        PublisherNotOpenError,
        PublisherOptions,
        RetryPolicy,
    )
    from dbos_publishers._publisher import Publisher
    from dbos_publishers._wire import BatchRequest, BatchSummary, ChunkOutcome, ChunkSpec
    from dbos_publishers.store._ledger import LedgerEntry

# name -> (module, attribute)
_PUBLIC: dict[str, tuple[str, str]] = {
    # the publisher seam
    "Publisher": ("dbos_publishers._publisher", "Publisher"),
    "ChunkSpec": ("dbos_publishers._publisher", "ChunkSpec"),
    "LedgerEntry": ("dbos_publishers.store._ledger", "LedgerEntry"),
    # its options and policies
    "PublisherOptions": ("dbos_publishers._options", "PublisherOptions"),
    "DeliveryOptions": ("dbos_publishers._options", "DeliveryOptions"),
    "RetryPolicy": ("dbos_publishers._options", "RetryPolicy"),
    "PublisherNotOpenError": ("dbos_publishers._options", "PublisherNotOpenError"),
    # the wire types: a batch submitted, a chunk's outcome, a batch's summary
    "BatchRequest": ("dbos_publishers._publisher", "BatchRequest"),
    "ChunkOutcome": ("dbos_publishers._publisher", "ChunkOutcome"),
    "BatchSummary": ("dbos_publishers._publisher", "BatchSummary"),
    # submitting work, and the settings every command reads from the environment
    "Client": ("dbos_publishers._client", "Client"),
    "Settings": ("dbos_publishers._config", "Settings"),
    # failpoints a publisher declares and places
    "declare_failpoint": ("dbos_publishers._failpoints", "declare"),
    "failpoint": ("dbos_publishers._failpoints", "failpoint"),
    "FailpointError": ("dbos_publishers._failpoints", "FailpointError"),
    "TransientFailpointError": ("dbos_publishers._failpoints", "TransientFailpointError"),
    # the error root and its kinds
    "AppError": ("dbos_publishers._errors", "AppError"),
    "BadInputError": ("dbos_publishers._errors", "BadInputError"),
    "ConfigError": ("dbos_publishers._errors", "ConfigError"),
    "ConflictError": ("dbos_publishers._errors", "ConflictError"),
    "NotFoundError": ("dbos_publishers._errors", "NotFoundError"),
    "StateError": ("dbos_publishers._errors", "StateError"),
    "UnreachableDatabaseError": ("dbos_publishers._errors", "UnreachableDatabaseError"),
}

__all__ = [
    "AppError",
    "BadInputError",
    "BatchRequest",
    "BatchSummary",
    "ChunkOutcome",
    "ChunkSpec",
    "Client",
    "ConfigError",
    "ConflictError",
    "DeliveryOptions",
    "FailpointError",
    "LedgerEntry",
    "NotFoundError",
    "Publisher",
    "PublisherNotOpenError",
    "PublisherOptions",
    "RetryPolicy",
    "Settings",
    "StateError",
    "TransientFailpointError",
    "UnreachableDatabaseError",
    "declare_failpoint",
    "failpoint",
]
assert sorted(__all__) == sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module 'dbos_publishers' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
