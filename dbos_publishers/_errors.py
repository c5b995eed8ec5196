"""The product's exceptions: one root, and the three kinds a caller reacts to differently.

No DBOS import here: this is the rules layer. The CLI maps every `AppError` to one line and exit
code 2; the HTTP API maps bad input to 400/422, an unknown name to 404, a conflict or a wrong
state to 409 and an unreachable database to 503.
"""

from __future__ import annotations


class AppError(Exception):
    """Root of every error this product raises on purpose; the message is one line for people."""


class BadInputError(AppError, ValueError):
    """A setting, argument, request or spec is missing or malformed; the message names it."""


class ConfigError(BadInputError):
    """A setting is missing or malformed; the message names it."""


class UnreachableDatabaseError(AppError):
    """A database cannot be reached; the message names host and database, never the password."""


class NotFoundError(AppError):
    """The request names something that does not exist (an unknown batch id)."""


class ConflictError(AppError):
    """The request contradicts what is already recorded (a batch id taken by another batch)."""


class StateError(AppError):
    """The databases hold work this process cannot serve (publishers no longer declared)."""
