"""JSON event messages, generated per position, recorded in the ledger."""

from __future__ import annotations

from collections.abc import Sequence

from dbos_publishers import ChunkSpec, Publisher


def event_payload(publisher: str, topic: str, batch_id: str, position: int) -> str:
    """A JSON event; names and ids are validated to need no escaping, so no json.dumps per row."""
    return f'{{"publisher":"{publisher}","topic":"{topic}","batch":"{batch_id}","seq":{position}}}'


class EventPublisher(Publisher):
    """Publishes JSON events; a message list given with the batch is published verbatim."""

    def body(self, chunk: ChunkSpec, position: int) -> str:
        return event_payload(self.name, chunk["topic"], chunk["batch_id"], position)

    def bodies(self, chunk: ChunkSpec) -> Sequence[str]:
        """event_payload for every position at once: one format per message, no call."""
        if chunk["messages"] is not None or type(self).body is not EventPublisher.body:
            return super().bodies(chunk)  # given messages, or a subclass's own body
        head = event_payload(self.name, chunk["topic"], chunk["batch_id"], 0)[: -len("0}")]
        start = chunk["start"]
        return [f"{head}{position}}}" for position in range(start, start + chunk["count"])]
