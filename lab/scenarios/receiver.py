"""A stand-in for a downstream API: an HTTP receiver that applies each keyed message once.

`POST /deliveries` takes `{"messages": [{"key": str | null, "payload": str}, ...]}` and answers
`{"accepted": n, "deduplicated": m}`: n messages applied, m skipped because their key was seen.
A message without a key is always applied, so repeats of it become repeated side effects.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import cast

from dbos_publishers._errors import BadInputError

PATH = "/deliveries"
MAX_BODY_BYTES = 64 * 1024 * 1024


class MalformedDeliveryError(BadInputError):
    """A request body that is not a valid delivery; the message says why."""


@dataclass(frozen=True)
class Message:
    key: str | None
    payload: str


@dataclass(frozen=True)
class ReceiverStats:
    """What arrived: every attempt, the effects applied, and the repeats refused by key."""

    attempts: int  # messages received, repeats included
    effects: int  # messages applied
    deduplicated: int  # messages not applied because their key had been applied already
    repeated_keys: int  # distinct keys that arrived more than once


class Deliveries:
    """The receiver's state: which keys were applied and how often each arrived; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arrivals: Counter[str] = Counter()
        self._attempts = 0
        self._effects = 0

    def record(self, messages: list[Message]) -> tuple[int, int]:
        """Apply the messages whose key is new (or absent); returns (applied, deduplicated)."""
        with self._lock:
            applied = 0
            for message in messages:
                if message.key is None or message.key not in self._arrivals:
                    applied += 1
                if message.key is not None:
                    self._arrivals[message.key] += 1
            self._attempts += len(messages)
            self._effects += applied
            return applied, len(messages) - applied

    def stats(self) -> ReceiverStats:
        with self._lock:
            return ReceiverStats(
                attempts=self._attempts,
                effects=self._effects,
                deduplicated=self._attempts - self._effects,
                repeated_keys=sum(1 for count in self._arrivals.values() if count > 1),
            )


def parse_delivery(body: bytes) -> list[Message]:
    """The messages of a delivery body, or MalformedDeliveryError naming what is wrong."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise MalformedDeliveryError("body is not JSON") from None
    messages = data.get("messages") if isinstance(data, dict) else None
    if not isinstance(messages, list):
        raise MalformedDeliveryError("body must be an object with a 'messages' list")
    return [_message(item, index) for index, item in enumerate(messages)]


def _message(item: object, index: int) -> Message:
    if not isinstance(item, dict) or set(item) != {"key", "payload"}:
        raise MalformedDeliveryError(f"messages[{index}] must have exactly 'key' and 'payload'")
    key, payload = item["key"], item["payload"]
    if not (key is None or isinstance(key, str)) or not isinstance(payload, str):
        raise MalformedDeliveryError(
            f"messages[{index}]: key must be a string or null, payload a string"
        )
    return Message(key=key, payload=payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, deliveries: Deliveries) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.deliveries = deliveries


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        if self.path != PATH:
            self._reply(404, {"error": f"unknown path {self.path}; POST to {PATH}"})
            return
        try:
            messages = parse_delivery(self._body())
        except MalformedDeliveryError as exc:
            self._reply(400, {"error": str(exc)})
            return
        applied, deduplicated = cast(_Server, self.server).deliveries.record(messages)
        self._reply(200, {"accepted": applied, "deduplicated": deduplicated})

    def _body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise MalformedDeliveryError("a Content-Length header is required") from None
        if not 0 <= length <= MAX_BODY_BYTES:
            raise MalformedDeliveryError(f"Content-Length must be 0-{MAX_BODY_BYTES}")
        return self.rfile.read(length)

    def _reply(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """Silent: a test's output is no place for an access log."""


class Receiver:
    """The receiver on an ephemeral loopback port, served from a daemon thread while entered."""

    def __init__(self) -> None:
        self._deliveries = Deliveries()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the receiver is not running; use it as a context manager")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{PATH}"

    def stats(self) -> ReceiverStats:
        return self._deliveries.stats()

    def start(self) -> None:
        self._server = _Server(self._deliveries)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Receiver:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
