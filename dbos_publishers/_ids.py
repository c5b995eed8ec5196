"""The workflow-id grammar, built and parsed here only: a batch is `batch-<batch id>`, its chunk
`batch-<batch id>/chunk-<index, 5 digits>`, a retry of a chunk `<chunk id>/retry-<n>`.

"/" cannot occur in a batch id (BATCH_ID), so no chunk or retry id can equal another batch's id,
and the batch of any id is what precedes its first "/".
"""

from __future__ import annotations

import re

BATCH_PREFIX = "batch-"
CHUNK_SEPARATOR = "/chunk-"
RETRY_SEPARATOR = "/retry-"
_CHUNK_ID = re.compile(r"batch-(?P<batch>[^/]+)/chunk-(?P<index>\d+)")


def batch_workflow_id(batch_id: str) -> str:
    return f"{BATCH_PREFIX}{batch_id}"


def chunk_workflow_id(batch_id: str, index: int) -> str:
    return f"{BATCH_PREFIX}{batch_id}{CHUNK_SEPARATOR}{index:05d}"


def retry_workflow_id(chunk_id: str, attempt: int) -> str:
    """The `attempt`-th retry (from 1) of a chunk workflow."""
    return f"{chunk_id}{RETRY_SEPARATOR}{attempt}"


def batch_of(workflow_id: str) -> str:
    """The batch id any batch, chunk or retry workflow id belongs to."""
    return workflow_id.removeprefix(BATCH_PREFIX).split("/", 1)[0]


def batch_workflow_of(workflow_id: str) -> str:
    """The batch workflow id any batch, chunk or retry workflow id belongs to."""
    return batch_workflow_id(batch_of(workflow_id))


def is_batch_family(workflow_id: str) -> bool:
    """A batch, chunk or retry workflow (not another workflow of the application)."""
    return workflow_id.startswith(BATCH_PREFIX)


def is_chunk(workflow_id: str) -> bool:
    """A chunk workflow itself, not its batch and not a retry of it."""
    return _CHUNK_ID.fullmatch(workflow_id) is not None


def is_chunk_or_retry(workflow_id: str) -> bool:
    return CHUNK_SEPARATOR in workflow_id


def is_retry(workflow_id: str) -> bool:
    return RETRY_SEPARATOR in workflow_id


def retried_chunk(workflow_id: str) -> str:
    """The chunk workflow a retry re-drives (a chunk's own id is its own root)."""
    return workflow_id.split(RETRY_SEPARATOR, 1)[0]


def retry_prefix(chunk_id: str) -> str:
    """What every retry id of a chunk starts with."""
    return chunk_id + RETRY_SEPARATOR
