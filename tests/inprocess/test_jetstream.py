"""JetStreamPublisher against the shared NATS JetStream: each message once per id, a resent
chunk dropped by `Nats-Msg-Id` within the stream's duplicate window, the window read and
checked at open."""

from __future__ import annotations

import pytest

from dbos_publishers import AppError, ConfigError
from dbos_publishers.contrib._brokers import BrokerPublisher
from dbos_publishers.contrib.jetstream import JetStreamPublisher
from tests.brokers import NATS_URL, JetStreamStream
from tests.inprocess.conftest import StartService
from tests.inprocess.publishers import NoMessageIdJetStreamPublisher
from tests.inprocess.sinks import closed_port, deliver, detached, opened

CHUNK = 10
JETSTREAM = "dbos_publishers.contrib.jetstream:JetStreamPublisher"


def options(stream: JetStreamStream, **extra: object) -> dict[str, object]:
    subject = stream.subject.replace(">", "{topic}")
    return {"url": NATS_URL, "stream": stream.name, "subject": subject, **extra}


@pytest.mark.parametrize(
    ("cls", "copies"),
    [(JetStreamPublisher, 1), (NoMessageIdJetStreamPublisher, 2)],
    ids=["with-msg-id", "broken-without-msg-id"],
)
def test_a_chunk_delivered_twice_is_stored_once_per_message_id(
    jetstream_stream: JetStreamStream, cls: type[JetStreamPublisher], copies: int
) -> None:
    """The second delivery is the replay of a crash between JetStream's acks and the step's
    checkpoint; without the header every id is stored twice, and the check sees it."""
    with opened(detached(cls, options(jetstream_stream, dedupe_window_sec=10))) as publisher:
        deliver(publisher, CHUNK)
        deliver(publisher, CHUNK)
    stored = jetstream_stream.message_ids()
    if cls is NoMessageIdJetStreamPublisher:
        assert stored == {"(none)": CHUNK * copies}
    else:
        assert list(stored.items()) == [(f"b:{i}", 1) for i in range(CHUNK)]  # in order


@pytest.mark.parametrize("jetstream_stream", [45], indirect=True)
def test_open_reads_the_streams_duplicate_window_into_the_guarantee(
    jetstream_stream: JetStreamStream,
) -> None:
    publisher = detached(JetStreamPublisher, options(jetstream_stream, dedupe_window_sec=45))
    assert publisher.guarantee.endswith("(read when opened)")
    with opened(publisher):
        assert publisher.duplicate_window_sec == 45
        assert publisher.guarantee == "exactly once within the broker's dedupe window of 45 s"


def test_a_stream_deduplicating_for_less_than_declared_is_refused_in_one_line(
    jetstream_stream: JetStreamStream,
) -> None:
    publisher = detached(JetStreamPublisher, options(jetstream_stream, dedupe_window_sec=60))
    with pytest.raises(ConfigError) as refused, opened(publisher):
        pass
    assert str(refused.value) == (
        f"publisher 'sink': stream '{jetstream_stream.name}' deduplicates for 30 s, less than "
        "the 60 s this publisher needs (dedupe_window_sec, retries)"
    )


def test_a_missing_stream_is_refused_in_one_line(jetstream_stream: JetStreamStream) -> None:
    missing = {**options(jetstream_stream), "stream": "NO_SUCH_STREAM_22"}
    with pytest.raises(ConfigError) as refused, opened(detached(JetStreamPublisher, missing)):
        pass
    assert str(refused.value) == "publisher 'sink': JetStream has no stream 'NO_SUCH_STREAM_22'"


def test_an_unreachable_server_is_one_line_without_its_password() -> None:
    url = f"nats://app:hunter2@127.0.0.1:{closed_port()}"
    publisher = detached(JetStreamPublisher, {"url": url, "stream": "S", "subject": "s"})
    with pytest.raises(AppError) as refused, opened(publisher):
        pass
    assert str(refused.value).startswith(
        f"publisher 'sink': cannot reach NATS at {url.replace('hunter2', '***')}: "
    )
    assert "hunter2" not in str(refused.value)


def test_a_refused_url_option_is_shown_without_its_password() -> None:
    bad = {"url": "http://app:hunter2@broker:4222", "stream": "S", "subject": "s"}
    with pytest.raises(ConfigError) as refused:
        JetStreamPublisher.validate_options(bad)
    assert str(refused.value).startswith("JetStreamPublisher option 'url': URL scheme should be")
    assert "app:***@broker" in str(refused.value)
    assert "hunter2" not in str(refused.value)
    with pytest.raises(ConfigError) as unmasked:  # the broken variant: the base class's line
        super(BrokerPublisher, JetStreamPublisher).validate_options(bad)
    assert "hunter2" in str(unmasked.value)


def test_the_service_publishes_each_message_once_to_its_topics_subject(
    start_service: StartService, jetstream_stream: JetStreamStream
) -> None:
    subject = jetstream_stream.subject.replace(">", "{topic}")
    service = start_service(
        f'[[publishers]]\nname = "js"\nclass = "{JETSTREAM}"\nchunk_size = 10\n'
        f'[publishers.options]\nurl = "{NATS_URL}"\n'
        f'stream = "{jetstream_stream.name}"\nsubject = "{subject}"\ndedupe_window_sec = 30\n'
    )
    summary = service.publish("js", 30, topic="orders")
    assert (summary["published"], summary["failed"]) == (30, 0)
    assert jetstream_stream.message_ids() == {f"b1:{i}": 1 for i in range(30)}
    assert service.ledger_state({"b1": 30}).report.ok
