"""The reference service's publisher: JSON event messages recorded in the ledger."""

from __future__ import annotations

from dbos_publishers._publisher import ChunkSpec, Publisher


def event_payload(publisher: str, topic: str, batch_id: str, position: int) -> str:
    """A JSON event; names and ids are validated to need no escaping, so no json.dumps per row."""
    return f'{{"publisher":"{publisher}","topic":"{topic}","batch":"{batch_id}","seq":{position}}}'


class EventPublisher(Publisher):
    """Publishes JSON events; a message list given with the batch is published verbatim."""

    def generate(self, chunk: ChunkSpec, position: int) -> str:
        return event_payload(self.name, chunk["topic"], chunk["batch_id"], position)

    def generate_chunk(self, chunk: ChunkSpec) -> list[str]:
        """event_payload for every position at once: one format per message, no call."""
        if type(self).generate is not EventPublisher.generate:
            return super().generate_chunk(chunk)  # a subclass's own generate is honoured
        head = event_payload(self.name, chunk["topic"], chunk["batch_id"], 0)[: -len("0}")]
        start = chunk["start"]
        return [f"{head}{position}}}" for position in range(start, start + chunk["count"])]
