"""Publisher options: the typed models a class declares for its `[publishers.options]`, the
`deliver` step's retry policy, and one-line wording for what pydantic refuses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import pydantic

SHOWN_INPUT_CHARS = 60  # of a bad option value, in its one-line error
UNKNOWN_KEY = frozenset({"extra_forbidden", "unexpected_keyword_argument"})  # pydantic's types


@pydantic.dataclasses.dataclass(frozen=True, config=pydantic.ConfigDict(extra="forbid"))
class RetryPolicy:
    """How the `deliver` step retries: attempt k+1 starts interval_seconds * backoff_rate**(k-1)
    after attempt k failed; after max_attempts the chunk fails (DBOSMaxStepRetriesExceeded)."""

    max_attempts: Annotated[int, pydantic.Field(ge=1, le=100)] = 5
    interval_seconds: Annotated[float, pydantic.Field(ge=0, le=3600)] = 0.5
    backoff_rate: Annotated[float, pydantic.Field(ge=1, le=10)] = 2.0


class PublisherOptions(pydantic.BaseModel):
    """The `[publishers.options]` a class takes: none here. Subclass it with one field per option;
    unknown keys are refused, and the validated model is the instance's `options`."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class DeliveryOptions(PublisherOptions):
    """Options of a publisher that delivers: `delivery_retry` overrides the class's policy."""

    delivery_retry: RetryPolicy | None = None


class PublisherNotOpenError(RuntimeError):
    """`deliver` ran in a process that never called the publisher's `open`."""


def describe_invalid(
    owner: str, model: type[pydantic.BaseModel], exc: pydantic.ValidationError
) -> str:
    """One line for the first problem pydantic found (and how many more there are); an unknown
    key first, as a misspelt option is also a missing one and the known names help most."""
    errors = sorted(exc.errors(include_url=False), key=lambda e: e["type"] not in UNKNOWN_KEY)
    first = errors[0]
    where = _option_path(first["loc"])
    if first["type"] in UNKNOWN_KEY:
        line = f"{owner} has no option '{where}'"
        if len(first["loc"]) == 1:
            line += f" (it takes: {', '.join(model.model_fields)})"
    elif first["type"] == "missing":
        line = f"{owner} needs option '{where}'"
    else:
        message = " ".join(first["msg"].split())
        line = f"{owner} option '{where}': {message} (got {_shown(first['input'])})"
    more = len(errors) - 1
    return line + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")


def _option_path(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path.lstrip(".")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN_INPUT_CHARS else text[: SHOWN_INPUT_CHARS - 3] + "..."
