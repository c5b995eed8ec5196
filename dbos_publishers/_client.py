"""The client a caller submits work with, from its own script or web app: it needs only the
system database (as `dbos-publishers publish` does), never the service's process."""

from __future__ import annotations

from collections.abc import Mapping

from dbos_publishers import _batches as batches
from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers._config import Settings
from dbos_publishers._ids import batch_workflow_id
from dbos_publishers._wire import BatchSummary


class Client:
    """Submits batches to the publishers the settings declare, and waits for their summaries."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Client:
        """A client for the deployment the environment names, as every command reads it."""
        return cls(Settings.from_env() if env is None else Settings.from_env(env))

    def submit_batch(
        self, publisher: str, *, count: int, topic: str = "default", batch_id: str | None = None
    ) -> str:
        """Enqueue a batch of `count` messages (made by the publisher's `bodies` hook) and return
        its batch id; the same batch id again is the same batch, never a second one."""
        submission = batches.validate(
            self.settings, publisher, count=count, topic=topic, batch_id=batch_id
        )
        batches.submit(self.settings, submission)
        return submission.request["batch_id"]

    def wait(self, batch_id: str, *, poll_sec: float = 0.1) -> BatchSummary:
        """Wait for a submitted batch to end and return its summary."""
        workflow_id = batch_workflow_id(batch_id)
        with dbos_gateway.client(self.settings.system_db) as client:
            summary: BatchSummary = dbos_gateway.wait_result(client, workflow_id, poll_sec=poll_sec)
        return summary

    def publish_batch(
        self, publisher: str, *, count: int, topic: str = "default", batch_id: str | None = None
    ) -> BatchSummary:
        """Submit a batch and wait for its summary."""
        return self.wait(self.submit_batch(publisher, count=count, topic=topic, batch_id=batch_id))
