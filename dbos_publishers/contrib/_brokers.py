"""What the broker sinks share: a URL shown without its password, a stream or subject name that
may hold the chunk's `{topic}`, and the horizon a broker's deduplication must cover."""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import ClassVar
from urllib.parse import urlsplit

from dbos_publishers import AppError, ConfigError, PublisherOptions, RetryPolicy
from dbos_publishers.contrib.events import EventPublisher

MASK = "***"


def shown_url(url: object) -> str:
    """The URL as logs and errors may show it: its password replaced by ***."""
    text = str(url)
    try:
        password = urlsplit(text).password
    except ValueError:
        return text
    return text.replace(f":{password}@", f":{MASK}@") if password else text


def topic_template(value: str) -> str:
    """A name that may hold `{topic}` (the chunk's topic) and no other placeholder."""
    fields = {field for _, field, _, _ in string.Formatter().parse(value) if field is not None}
    if fields - {"topic"}:
        raise ValueError(f"the only placeholder allowed is {{topic}} (got {sorted(fields)})")
    return value


def retry_span_sec(policy: RetryPolicy) -> float:
    """How long after a first attempt the `deliver` step's own retries may still send (the sum
    of the waits between its attempts): the least horizon a dedupe must cover."""
    waits = range(policy.max_attempts - 1)
    return sum(policy.interval_seconds * policy.backoff_rate**k for k in waits)


class BrokerPublisher(EventPublisher):
    """A sink into a broker reached by its `url` option, which may carry a password."""

    # The guarantee in words a user can check; `{window_sec}` is the dedupe horizon in force.
    GUARANTEE: ClassVar[str] = "exactly once within the broker's dedupe window of {window_sec:g} s"

    @classmethod
    def validate_options(cls, options: Mapping[str, object]) -> PublisherOptions:
        """As the base class, but a refused option is reported with the URL's password masked
        (the one-line error shows the value it refused)."""
        try:
            return super().validate_options(options)
        except ConfigError:
            masked = {**options, "url": shown_url(options["url"])} if "url" in options else {}
            if not masked or masked == options:
                raise
        super().validate_options(masked)  # the same complaint, about the masked URL
        raise ConfigError(f"{cls.__name__} option 'url': not a valid URL (password not shown)")

    def unreachable(self, broker: str, url: object, reason: str) -> AppError:
        """One line for a broker `open` could not reach, naming it without its password."""
        reason = (reason.splitlines() or [""])[0]
        return AppError(
            f"publisher '{self.name}': cannot reach {broker} at {shown_url(url)}: {reason}"
        )
