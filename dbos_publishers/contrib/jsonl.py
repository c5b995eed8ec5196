"""A publisher whose side effect is a file: each chunk is appended to a JSON-lines file.

Each line is `{"key": message id, "payload": message}`. Appends are at least once: a crash after
the write and before the `deliver` step's checkpoint appends the chunk again on restart, so a
reader deduplicates by `key` (the same on every attempt).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from dbos_publishers import ChunkSpec, DeliveryOptions, LedgerEntry, PublisherNotOpenError
from dbos_publishers.contrib.events import EventPublisher


class JsonlFileOptions(DeliveryOptions):
    path: Path  # relative to the service's working directory; its directory must exist


class JsonlFilePublisher(EventPublisher):
    """Appends each chunk to the `path` option's file, fsync'd before the chunk is recorded.

    The file is opened once per process in `open` (append mode) and closed in `close`; chunks
    delivered concurrently are written whole, one after another.
    """

    Options = JsonlFileOptions
    options: JsonlFileOptions
    _file: TextIO | None = None

    def open(self) -> None:
        self._lock = threading.Lock()
        self._file = self.options.path.open("a", encoding="utf-8")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def deliver(self, chunk: ChunkSpec, entries: Sequence[LedgerEntry]) -> None:
        if self._file is None:
            raise PublisherNotOpenError(f"publisher '{self.name}' delivered before open()")
        lines = "".join(
            json.dumps({"key": e.message_id, "payload": e.payload}) + "\n" for e in entries
        )
        with self._lock:
            self._file.write(lines)
            self._file.flush()
            os.fsync(self._file.fileno())
