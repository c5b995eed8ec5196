"""The `deliver` step: retried by its own policy, before the chunk transaction and outside the
transaction's retries, so a retried commit never delivers again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dbos_publishers._ids import chunk_workflow_id
from dbos_publishers._metrics import REGISTRY
from lab.scenarios.receiver import Receiver
from tests.inprocess.conftest import StartService
from tests.inprocess.publishers import ATTEMPTS

PUBLISHERS = "tests.inprocess.publishers"
MESSAGES = 30  # three chunks of 10
CHUNKS = 3


def declared(name: str, cls: str, options: str = "") -> str:
    entry = f'[[publishers]]\nname = "{name}"\nclass = "{cls}"\nchunk_size = 10\n'
    return entry + (f"[publishers.options]\n{options}" if options else "")


@pytest.fixture(autouse=True)
def no_attempts_yet() -> Iterator[None]:
    ATTEMPTS.clear()
    yield
    ATTEMPTS.clear()


def test_a_delivery_refused_twice_is_retried_and_the_chunk_commits_once(
    start_service: StartService,
) -> None:
    service = start_service(declared("flaky", f"{PUBLISHERS}:FlakyPublisher"))
    summary = service.publish("flaky", MESSAGES)
    assert (summary["published"], summary["failed"], summary["failed_chunks"]) == (MESSAGES, 0, [])
    assert dict(ATTEMPTS) == {("flaky", "b1", index): 3 for index in range(CHUNKS)}
    for index in range(CHUNKS):  # the retries are inside one step; one commit per chunk
        assert service.step_names(chunk_workflow_id("b1", index)) == ["deliver", "record_chunk"]
    state = service.ledger_state({"b1": MESSAGES})
    assert state.report.ok, state.report.violations
    assert state.report.ledger_rows == MESSAGES
    assert state.local_counters == [("flaky", "default", MESSAGES)]
    assert state.global_counters == {"default": MESSAGES}


def test_a_delivery_that_always_fails_fails_its_chunk_and_records_nothing(
    start_service: StartService,
) -> None:
    service = start_service(declared("down", f"{PUBLISHERS}:DownPublisher"))
    summary = service.publish("down", MESSAGES)
    assert (summary["published"], summary["failed"]) == (0, MESSAGES)
    assert len(summary["failed_chunks"]) == CHUNKS
    for outcome in summary["failed_chunks"]:
        assert outcome["error"] is not None
        assert outcome["error"].startswith("DBOSMaxStepRetriesExceeded: ")
        assert outcome["error"].endswith(
            "Step deliver has exceeded its maximum of 3 retries "
            "(last: DeliveryRefusedError: attempt 3 refused)"
        )
    assert dict(ATTEMPTS) == {
        ("down", "b1", index): 3 for index in range(CHUNKS)
    }  # the class policy
    assert service.step_names(chunk_workflow_id("b1", 0)) == ["deliver"]
    state = service.ledger_state({})
    assert state.report.ledger_rows == 0
    assert state.local_counters == []
    assert state.global_counters == {}


def test_the_retry_option_overrides_the_class_policy(start_service: StartService) -> None:
    retry = "[publishers.options.delivery_retry]\nmax_attempts = 2\ninterval_seconds = 0\n"
    service = start_service(declared("down", f"{PUBLISHERS}:DownPublisher", retry))
    summary = service.publish("down", 10)
    assert summary["failed"] == 10
    assert dict(ATTEMPTS) == {("down", "b1", 0): 2}


def test_a_retried_commit_does_not_deliver_again(start_service: StartService) -> None:
    """The first chunk transaction raises a transient error and is retried; its chunk was
    delivered once, before the transaction, and is not delivered again."""
    service = start_service(
        declared("counted", f"{PUBLISHERS}:CountingPublisher"),
        failpoint_spec="chunk.before_commit=raise-transient@1",
    )
    summary = service.publish("counted", MESSAGES)
    assert summary["published"] == MESSAGES
    assert dict(ATTEMPTS) == {("counted", "b1", index): 1 for index in range(CHUNKS)}
    retried = [
        names
        for index in range(CHUNKS)
        if (names := service.step_names(chunk_workflow_id("b1", index)))
        != ["deliver", "record_chunk"]
    ]
    assert retried == [["deliver", "record_chunk", "record_chunk"]]  # the failpoint did fire
    state = service.ledger_state({"b1": MESSAGES})
    assert state.report.ok, state.report.violations
    assert state.local_counters == [("counted", "default", MESSAGES)]


def test_a_retried_commit_does_not_post_again(start_service: StartService) -> None:
    """The same through the webhook publisher: the receiver sees each message once."""
    with Receiver() as receiver:
        service = start_service(
            declared(
                "hooks",
                "dbos_publishers.contrib.webhook:WebhookPublisher",
                f'endpoint = "{receiver.url}"\n',
            ),
            failpoint_spec="chunk.before_commit=raise-transient@1",
        )
        summary = service.publish("hooks", MESSAGES)
        stats = receiver.stats()
    assert summary["published"] == MESSAGES
    assert (stats.attempts, stats.effects, stats.deduplicated) == (MESSAGES, MESSAGES, 0)


def deliver_counts(publisher: str) -> tuple[float, float]:
    """The process's deliver counters for one publisher (0 before its first attempt)."""
    labels = {"publisher": publisher}
    return tuple(  # type: ignore[return-value]
        REGISTRY.get_sample_value(f"publisher_deliver_{kind}_total", labels) or 0.0
        for kind in ("attempts", "failures")
    )


def test_deliver_attempts_and_failures_are_counted_per_publisher(
    start_service: StartService,
) -> None:
    """One chunk refused once then accepted: two attempts, one failure. The registry is the
    process's, so the test reads the change over its own run."""
    service = start_service(declared("once", f"{PUBLISHERS}:OnceRefusedPublisher"))
    before = deliver_counts("once")
    summary = service.publish("once", 10)
    assert (summary["published"], summary["failed"]) == (10, 0)
    after = deliver_counts("once")
    assert (after[0] - before[0], after[1] - before[1]) == (2.0, 1.0)
    assert dict(ATTEMPTS) == {("once", "b1", 0): 2}
