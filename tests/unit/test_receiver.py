"""Unit tests for the side-effect receiver over real loopback HTTP, and the webhook's delivery."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from lab.scenarios.receiver import Receiver, ReceiverStats

Reply = tuple[int, dict[str, object]]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def post(url: str, body: bytes) -> Reply:
    request = urllib.request.Request(url, data=body, method="POST")  # noqa: S310 - loopback http
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - as above
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def deliver(url: str, *messages: tuple[str | None, str]) -> Reply:
    body = {"messages": [{"key": key, "payload": payload} for key, payload in messages]}
    return post(url, json.dumps(body).encode())


def test_url_is_an_ephemeral_loopback_port(receiver: Receiver) -> None:
    host_port = receiver.url.removeprefix("http://127.0.0.1:").removesuffix("/deliveries")
    assert host_port.isdigit()
    assert int(host_port) > 0


def test_a_keyed_message_is_applied_once(receiver: Receiver) -> None:
    assert deliver(receiver.url, ("b:0", "x"), ("b:1", "y")) == (
        200,
        {"accepted": 2, "deduplicated": 0},
    )
    assert deliver(receiver.url, ("b:1", "y"), ("b:2", "z"), ("b:1", "y")) == (
        200,
        {"accepted": 1, "deduplicated": 2},
    )
    assert receiver.stats() == ReceiverStats(attempts=5, effects=3, deduplicated=2, repeated_keys=1)


def test_a_message_without_key_is_always_applied(receiver: Receiver) -> None:
    assert deliver(receiver.url, (None, "x"), (None, "x")) == (
        200,
        {"accepted": 2, "deduplicated": 0},
    )
    deliver(receiver.url, (None, "x"))
    assert receiver.stats() == ReceiverStats(attempts=3, effects=3, deduplicated=0, repeated_keys=0)


def test_an_empty_delivery_is_accepted(receiver: Receiver) -> None:
    assert deliver(receiver.url) == (200, {"accepted": 0, "deduplicated": 0})
    assert receiver.stats() == ReceiverStats(attempts=0, effects=0, deduplicated=0, repeated_keys=0)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"not json", "body is not JSON"),
        (b"\xff\xfe", "body is not JSON"),
        (b"[]", "body must be an object with a 'messages' list"),
        (b'{"messages": {"key": "a"}}', "body must be an object with a 'messages' list"),
        (b'{"messages": ["x"]}', "messages[0] must have exactly 'key' and 'payload'"),
        (
            b'{"messages": [{"key": "a", "payload": "p"}, {"payload": "p"}]}',
            "messages[1] must have exactly 'key' and 'payload'",
        ),
        (
            b'{"messages": [{"key": "a", "payload": "p", "extra": 1}]}',
            "messages[0] must have exactly 'key' and 'payload'",
        ),
        (
            b'{"messages": [{"key": "a", "payload": "p"}, {"key": 7, "payload": "p"}]}',
            "messages[1]: key must be a string or null, payload a string",
        ),
        (
            b'{"messages": [{"key": null, "payload": 7}]}',
            "messages[0]: key must be a string or null, payload a string",
        ),
    ],
)
def test_a_malformed_delivery_is_refused_and_not_recorded(
    receiver: Receiver, body: bytes, error: str
) -> None:
    assert post(receiver.url, body) == (400, {"error": error})
    assert receiver.stats() == ReceiverStats(attempts=0, effects=0, deduplicated=0, repeated_keys=0)


def test_an_unknown_path_is_not_found_and_not_recorded(receiver: Receiver) -> None:
    status, _ = post(receiver.url.replace("/deliveries", "/other"), b'{"messages": []}')
    assert status == 404
    assert receiver.stats().attempts == 0


def test_concurrent_repeats_of_one_key_apply_once(receiver: Receiver) -> None:
    replies: list[Reply] = []
    threads = [
        threading.Thread(target=lambda: replies.append(deliver(receiver.url, ("k", "p"))))
        for _ in range(16)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(reply[1]["accepted"] for reply in replies) == [0] * 15 + [1]  # type: ignore[type-var]
    assert receiver.stats() == ReceiverStats(
        attempts=16, effects=1, deduplicated=15, repeated_keys=1
    )


def test_requests_are_not_logged(receiver: Receiver, capfd: pytest.CaptureFixture[str]) -> None:
    deliver(receiver.url, ("a", "p"))
    post(receiver.url, b"nope")
    assert capfd.readouterr() == ("", "")


def test_a_stopped_receiver_refuses_connections() -> None:
    with Receiver() as receiver:
        url = receiver.url
    with pytest.raises(urllib.error.URLError):
        deliver(url, ("a", "p"))
