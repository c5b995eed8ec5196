"""RedisStreamPublisher against the shared Redis: each message once per id, a resent chunk
dropped by its dedupe key (SET NX and XADD in one script), the key living dedupe_ttl_sec."""

from __future__ import annotations

import pytest
import redis

from dbos_publishers import AppError, ConfigError
from dbos_publishers.contrib.redis_streams import RedisStreamPublisher
from tests.brokers import REDIS_URL, RedisStream
from tests.inprocess.conftest import StartService
from tests.inprocess.publishers import UnkeyedRedisStreamPublisher
from tests.inprocess.sinks import closed_port, deliver, detached, entries, opened

CHUNK = 10
TTL_SEC = 600
REDIS_STREAMS = "dbos_publishers.contrib.redis_streams:RedisStreamPublisher"


def options(stream: RedisStream, **extra: object) -> dict[str, object]:
    return {"url": REDIS_URL, "stream": stream.key, "dedupe_ttl_sec": TTL_SEC, **extra}


@pytest.mark.parametrize(
    ("cls", "copies"),
    [(RedisStreamPublisher, 1), (UnkeyedRedisStreamPublisher, 2)],
    ids=["keyed-by-message-id", "broken-unkeyed"],
)
def test_a_chunk_delivered_twice_is_stored_once_per_message_id(
    redis_stream: RedisStream, cls: type[RedisStreamPublisher], copies: int
) -> None:
    """The second delivery is the replay of a crash between the script and the step's
    checkpoint; with a key that is not the message id every id is stored twice, and the check
    sees it."""
    with opened(detached(cls, options(redis_stream))) as publisher:
        deliver(publisher, CHUNK)
        deliver(publisher, CHUNK)
    stored = redis_stream.message_ids()
    assert list(stored.items()) == [(f"b:{i}", copies) for i in range(CHUNK)]


def test_a_dedupe_key_lives_for_the_declared_ttl(redis_stream: RedisStream) -> None:
    publisher = detached(RedisStreamPublisher, options(redis_stream))
    assert publisher.guarantee == f"exactly once within the broker's dedupe window of {TTL_SEC} s"
    with opened(publisher):
        deliver(publisher, 1)
    key = publisher.dedupe_key(redis_stream.key, entries(1)[0])
    with redis.Redis.from_url(REDIS_URL) as client:
        remaining_ms = client.pttl(key)
    assert TTL_SEC * 1000 - 60_000 < remaining_ms <= TTL_SEC * 1000


def test_a_ttl_shorter_than_the_retries_is_refused_in_one_line(redis_stream: RedisStream) -> None:
    publisher = detached(RedisStreamPublisher, options(redis_stream, dedupe_ttl_sec=5))
    with pytest.raises(ConfigError) as refused, opened(publisher):
        pass
    assert str(refused.value) == (
        "publisher 'sink': dedupe_ttl_sec 5 is less than the 7.5 s the deliver retries may take "
        "to resend"
    )


def test_an_unreachable_server_is_one_line_without_its_password() -> None:
    url = f"redis://:hunter2@127.0.0.1:{closed_port()}/0"
    publisher = detached(RedisStreamPublisher, {"url": url, "stream": "s"})
    with pytest.raises(AppError) as refused, opened(publisher):
        pass
    assert str(refused.value).startswith(
        f"publisher 'sink': cannot reach Redis at {url.replace('hunter2', '***')}: "
    )
    assert "hunter2" not in str(refused.value)


def test_the_service_publishes_each_message_once(
    start_service: StartService, redis_stream: RedisStream
) -> None:
    service = start_service(
        f'[[publishers]]\nname = "rs"\nclass = "{REDIS_STREAMS}"\nchunk_size = 10\n'
        f'[publishers.options]\nurl = "{REDIS_URL}"\nstream = "{redis_stream.key}"\n'
    )
    summary = service.publish("rs", 30)
    assert (summary["published"], summary["failed"]) == (30, 0)
    assert redis_stream.message_ids() == {f"b1:{i}": 1 for i in range(30)}
    assert service.ledger_state({"b1": 30}).report.ok
