"""The reference service's publishers, built on the framework's public API as a service of your
own would be: order events and billing events, JSON generated per message."""

from __future__ import annotations

from dbos_publishers.contrib.events import EventPublisher


class OrderEvents(EventPublisher):
    """Order events (`orders` in publishers.toml)."""


class BillingEvents(EventPublisher):
    """Billing events (`billing` in publishers.toml): smaller chunks, set in the file."""
