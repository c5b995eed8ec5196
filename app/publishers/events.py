"""The reference service's publisher: JSON event messages recorded in the ledger."""

from __future__ import annotations

import json

from app.publishers.base import ChunkSpec, Publisher


class EventPublisher(Publisher):
    """Publishes JSON events; a message list given with the batch is published verbatim."""

    def payload(self, chunk: ChunkSpec, position: int) -> str:
        messages = chunk["messages"]
        if messages is not None:
            return messages[position - chunk["start"]]
        body = {"publisher": self.name, "topic": chunk["topic"], "batch": chunk["batch_id"]}
        return json.dumps({**body, "seq": position}, separators=(",", ":"))
