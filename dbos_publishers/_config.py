"""Everything the service reads from its environment, in one place; the publishers file it names
is read by dbos_publishers._declarations.

Every variable follows the same rules: unset and empty mean the default; a value is taken as
written, never trimmed or guessed (numbers are ASCII digits, words are exact); anything else is
refused with one line naming the variable, and never showing a password or a token."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast, get_args

import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError

from dbos_publishers._declarations import (
    DEFAULT_PUBLISHERS_FILE,
    PUBLISHERS_FILE_VARIABLE,
    PublisherDeclaration,
    QueueSettings,
    declarations,
    load_declarations,
    read_publishers_file,
    worker_table,
)
from dbos_publishers._errors import ConfigError

# Moved to dbos_publishers._declarations and dbos_publishers._errors; still importable from here.
__all__ = [
    "DEFAULT_PUBLISHERS_FILE",
    "ConfigError",
    "PublisherDeclaration",
    "QueueSettings",
    "load_declarations",
]

APP_NAME = "dbos-publishers"
# The command line a hint names: the console script the wheel installs (the reference service's
# `python -m app` is the same command line).
CLI = "dbos-publishers"
# The `dbos` CLI falls back to sqlite:///{name}.sqlite (dashes become underscores) when
# DBOS_SYSTEM_DATABASE_URL is empty; the service uses the same file so both see the same work.
DEFAULT_SYSTEM_DATABASE_URL = "sqlite:///dbos_publishers.sqlite"
DEFAULT_APP_DATABASE_URL = "sqlite:///dbos_publishers_app.sqlite"
DEFAULT_HTTP_HOST = "127.0.0.1"

# Used with fullmatch: `$` would let a trailing newline through. ASCII ranges only.
TOPIC_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
BATCH_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?")
INTEGER = re.compile(r"-?[0-9]+")
EXECUTOR_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
APP_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")  # workers.app_version holds 64
HOST_NAME = re.compile(
    r"(?!.{254})[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)

MAX_PORT = 65535
MAX_LEASE_SEC = 3600
DEFAULT_CONNECTIONS = 24  # per worker: three workers, the CLI and a lab fit under Postgres's 100
MAX_CONNECTIONS = 1000
MAX_POSTGRES_NAME_BYTES = 63  # NAMEDATALEN - 1: Postgres cuts longer names short, silently
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Their INFO records are start-up chatter (125 migration lines, queue listings, server banners):
# WARNING unless APP_LOG_LEVEL=DEBUG or APP_LOG_LEVELS names them.
QUIET_LOGGERS = ("dbos", "alembic", "uvicorn")
LOGGER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")

LogFormat = Literal["auto", "json", "console"]
Backend = Literal["sqlite", "postgresql"]


@dataclass(frozen=True)
class DatabaseUrl:
    """A validated database URL that never shows its password."""

    raw: str
    label: str

    @property
    def backend(self) -> Backend:
        return "sqlite" if self.raw.startswith("sqlite") else "postgresql"

    @property
    def sqlalchemy_url(self) -> sa.URL:
        url = sa.make_url(self.raw)
        if self.backend == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        return url

    @property
    def safe(self) -> str:
        """Where it points (host and database, or file), with the password hidden."""
        url = sa.make_url(self.raw)
        if self.backend == "sqlite":
            return f"sqlite file {url.database}"
        return (
            f"postgresql database '{url.database}' on {url.host or 'localhost'}:{url.port or 5432}"
        )

    def __str__(self) -> str:
        return sa.make_url(self.raw).render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"DatabaseUrl({self})"

    @classmethod
    def parse(cls, raw: str, label: str) -> DatabaseUrl:
        try:
            url = sa.make_url(raw)
        except (ArgumentError, ValueError):
            raise ConfigError(f"{label} is not a valid database URL") from None
        if url.drivername == "sqlite":
            if not url.database:
                raise ConfigError(
                    f"{label}: a sqlite URL needs a file path (sqlite:///name.sqlite)"
                )
            return cls(raw, label)
        if url.drivername not in ("postgresql", "postgresql+psycopg", "postgres"):
            raise ConfigError(
                f"{label}: unsupported scheme '{url.drivername}' (use sqlite:/// or postgresql://)"
            )
        _check_postgres_name(url.database, label)
        if url.drivername == "postgres":
            raw = url.set(drivername="postgresql").render_as_string(hide_password=False)
        return cls(raw, label)


def _check_postgres_name(name: str | None, label: str) -> None:
    """Any name is quoted as an identifier wherever SQL names it, so only what Postgres itself
    cannot hold is refused: a name it would cut short, or one with a control character."""
    if not name:
        raise ConfigError(f"{label}: a postgresql URL must name a database")
    if len(name.encode()) > MAX_POSTGRES_NAME_BYTES:
        raise ConfigError(
            f"{label}: the database name is over {MAX_POSTGRES_NAME_BYTES} bytes, which "
            "Postgres would silently cut short"
        )
    if not name.isprintable():
        raise ConfigError(f"{label}: the database name contains a control character")


@dataclass(frozen=True)
class LeaseSettings:
    """How often a worker heartbeats, and how long after its last one its lease expires."""

    heartbeat_sec: float = 2.0
    ttl_sec: float = 10.0


@dataclass(frozen=True)
class Settings:
    system_db: DatabaseUrl
    app_db: DatabaseUrl
    publishers: tuple[PublisherDeclaration, ...]
    queues: QueueSettings = field(default_factory=QueueSettings)
    failpoints: str = ""
    failpoint_seed: int = 0
    log_format: LogFormat = "auto"
    log_level: str = "INFO"
    log_levels: tuple[tuple[str, str], ...] = ()  # (logger, level): APP_LOG_LEVELS over defaults
    application_version: str = "1"
    http_host: str = DEFAULT_HTTP_HOST
    http_port: int | None = None  # None: no HTTP API
    api_token: str | None = None
    # Host headers the API answers (APP_ALLOWED_HOSTS); by default this machine's loopback names
    # when it binds to loopback, else any (a token is then required).
    allowed_hosts: tuple[str, ...] = ()
    allow_no_token: bool = False  # serve the API beyond loopback without a token
    executor_id: str | None = None  # None: derived from host and process at start
    leases: LeaseSettings = field(default_factory=LeaseSettings)
    connections: int = DEFAULT_CONNECTIONS  # the most this worker holds, both databases together

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        path = Path(_text(env, PUBLISHERS_FILE_VARIABLE) or DEFAULT_PUBLISHERS_FILE)
        data = read_publishers_file(path)  # once: the [workers] table comes from the same read
        publishers, queues = declarations(data, path)
        table = worker_table(data)
        system_db, app_db = database_urls_from_env(env)
        return cls(
            system_db=system_db,
            app_db=app_db,
            publishers=publishers,
            queues=queues,
            failpoints=_failpoints(env),
            failpoint_seed=_integer(env, "APP_FAILPOINT_SEED", 0),
            log_format=_log_format(env),
            log_level=log_level(env),
            log_levels=tuple(logger_levels(env).items()),
            application_version=_matching(env, "APP_VERSION", APP_VERSION, _VERSION_RULE) or "1",
            http_host=_http_host(env),
            http_port=_http_port(env),
            api_token=_api_token(env),
            allowed_hosts=_allowed_hosts(env, _http_host(env)),
            allow_no_token=_flag(env, "APP_ALLOW_NO_TOKEN"),
            executor_id=_matching(env, "APP_EXECUTOR_ID", EXECUTOR_ID, _EXECUTOR_RULE),
            leases=_lease_settings(table, env),
            connections=_connections(table, env),
        )

    def level_of(self, logger: str) -> str:
        """The level a logger runs at (DBOS reads it from its config, and sets it itself)."""
        return dict(self.log_levels).get(logger, self.log_level)

    def publisher(self, name: str) -> PublisherDeclaration:
        for declaration in self.publishers:
            if declaration.name == name:
                return declaration
        known = ", ".join(d.name for d in self.publishers)
        raise ConfigError(f"unknown publisher '{name}' (declared: {known})")


def database_urls_from_env(env: Mapping[str, str]) -> tuple[DatabaseUrl, DatabaseUrl]:
    """The system and application database URLs; empty or unset means the SQLite defaults."""
    return (
        DatabaseUrl.parse(
            _text(env, "DBOS_SYSTEM_DATABASE_URL", secret=True) or DEFAULT_SYSTEM_DATABASE_URL,
            "DBOS_SYSTEM_DATABASE_URL",
        ),
        DatabaseUrl.parse(
            _text(env, "APP_DATABASE_URL", secret=True) or DEFAULT_APP_DATABASE_URL,
            "APP_DATABASE_URL",
        ),
    )


def is_loopback(host: str) -> bool:
    """Whether a bind address is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _text(env: Mapping[str, str], name: str, *, secret: bool = False) -> str | None:
    """A free-text variable as written; None when unset or empty. Whitespace around it or a
    control character in it is refused, not trimmed: 'db ' or a pasted tab is a typo, and a
    trimmed value would not be the one the operator reads in their file."""
    value = env.get(name, "")
    if not value:
        return None
    shown = "" if secret else f": {value!r}"
    if not value.isprintable():
        raise ConfigError(f"{name} contains a tab, a newline or another control character{shown}")
    if value.strip() != value:
        raise ConfigError(f"{name} has whitespace before or after its value{shown}")
    return value


_VERSION_RULE = "letter or digit first, then letters, digits, . _ + -; at most 64 characters"
_EXECUTOR_RULE = "letter or digit first, then letters, digits, . _ : -; at most 128 characters"


def _matching(env: Mapping[str, str], name: str, pattern: re.Pattern[str], rule: str) -> str | None:
    value = env.get(name, "")
    if not value:
        return None
    if not pattern.fullmatch(value):
        raise ConfigError(f"{name} {value!r} is invalid ({rule})")
    return value


def _failpoints(env: Mapping[str, str]) -> str:
    """The spec, spaces around it ignored (as around its entries); ASCII only, since its parser
    would read another script's digits as numbers."""
    value = env.get("APP_FAILPOINTS", "")
    if not (value.isascii() and value.isprintable()):
        raise ConfigError(
            f"APP_FAILPOINTS must be printable ASCII (NAME=ACTION[@TRIGGER];...), not {value!r}"
        )
    return value.strip()


def _http_host(env: Mapping[str, str]) -> str:
    host = _text(env, "APP_HTTP_HOST") or DEFAULT_HTTP_HOST
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not HOST_NAME.fullmatch(host):
            raise ConfigError(
                f"APP_HTTP_HOST must be an IP address or a host name, not {host!r}"
            ) from None
    return host


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
ALLOWED_HOST = re.compile(r"\*|(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|[0-9A-Fa-f:.]+")


def _allowed_hosts(env: Mapping[str, str], http_host: str) -> tuple[str, ...]:
    """APP_ALLOWED_HOSTS: comma-separated host names, IP addresses, `*.domain` or `*`; by default
    the loopback names when the API binds to loopback (a page on another site that rebinds its
    DNS name to 127.0.0.1 is refused), else any host."""
    text = _text(env, "APP_ALLOWED_HOSTS")
    if text is None:
        return LOOPBACK_NAMES if is_loopback(http_host) else ("*",)
    hosts = tuple(part.strip() for part in text.split(","))
    for host in hosts:
        if not ALLOWED_HOST.fullmatch(host):
            raise ConfigError(
                "APP_ALLOWED_HOSTS must be host names, IP addresses, *.domain or *, "
                f"comma-separated, not {host!r}"
            )
    return hosts


def _api_token(env: Mapping[str, str]) -> str | None:
    token = _text(env, "APP_API_TOKEN", secret=True)
    # What a client can send in an Authorization header, byte for byte.
    if token is not None and not (token.isascii() and " " not in token):
        raise ConfigError("APP_API_TOKEN must be printable ASCII without spaces")
    return token


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "")
    if value not in ("", "0", "1"):
        raise ConfigError(f"{name} must be 1 or 0, not {value!r}")
    return value == "1"


def _lease_settings(table: Mapping[str, object], env: Mapping[str, str]) -> LeaseSettings:
    """[workers] heartbeat_sec / lease_ttl_sec, overridden by APP_HEARTBEAT_SEC and
    APP_LEASE_TTL_SEC; the TTL must cover at least two heartbeats."""
    base = LeaseSettings()
    heartbeat = _seconds(
        env.get("APP_HEARTBEAT_SEC") or table.get("heartbeat_sec", base.heartbeat_sec),
        "heartbeat_sec (APP_HEARTBEAT_SEC)",
    )
    ttl = _seconds(
        env.get("APP_LEASE_TTL_SEC") or table.get("lease_ttl_sec", base.ttl_sec),
        "lease_ttl_sec (APP_LEASE_TTL_SEC)",
    )
    if ttl < 2 * heartbeat:
        raise ConfigError(
            f"lease_ttl_sec ({ttl:g}) must be at least twice heartbeat_sec ({heartbeat:g})"
        )
    return LeaseSettings(heartbeat_sec=heartbeat, ttl_sec=ttl)


def _connections(table: Mapping[str, object], env: Mapping[str, str]) -> int:
    """[workers] connections, overridden by APP_CONNECTIONS: a whole number in [1, 1000] (the
    budget's floor depends on the queues and is checked with them, by `_connections`)."""
    value: object = env.get("APP_CONNECTIONS") or table.get("connections", DEFAULT_CONNECTIONS)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_CONNECTIONS:
        raise ConfigError(
            f"connections (APP_CONNECTIONS) must be a whole number in [1, {MAX_CONNECTIONS}], "
            f"not {value!r}"
        )
    return value


def _seconds(value: object, what: str) -> float:
    """A positive number of seconds, at most MAX_LEASE_SEC, from TOML or the environment."""
    if isinstance(value, str) and NUMBER.fullmatch(value):  # no spaces, no "nan" or "inf"
        value = float(value)
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not 0 < value <= MAX_LEASE_SEC
    ):
        raise ConfigError(
            f"{what} must be a number of seconds in (0, {MAX_LEASE_SEC}], not {value!r}"
        )
    return float(value)


def _http_port(env: Mapping[str, str]) -> int | None:
    value = env.get("APP_HTTP_PORT") or "8000"
    if value == "off":
        return None
    port = _integer(env, "APP_HTTP_PORT", 8000)
    if not 0 < port <= MAX_PORT:
        raise ConfigError(f"APP_HTTP_PORT must be 1-65535 or 'off', not {value!r}")
    return port


def _integer(env: Mapping[str, str], name: str, default: int) -> int:
    # ASCII digits only: int() would also take ' 8000', '8_000', '+80' and '٨٠٠٠'.
    value = env.get(name, "")
    if not value:
        return default
    if not INTEGER.fullmatch(value):
        raise ConfigError(f"{name} must be an integer, not {value!r}")
    return int(value)


def _log_format(env: Mapping[str, str]) -> LogFormat:
    value = env.get("APP_LOG_FORMAT") or "auto"
    for known in get_args(LogFormat):
        if value == known:
            return cast(LogFormat, known)
    raise ConfigError(f"APP_LOG_FORMAT must be auto, json or console, not {value!r}")


def log_level(env: Mapping[str, str]) -> str:
    """APP_LOG_LEVEL in any case of ASCII letters (upper() alone would make 'INFO' of an 'info'
    spelled with a Turkish dotless i)."""
    value = env.get("APP_LOG_LEVEL") or "INFO"
    if not (value.isascii() and value.upper() in LOG_LEVELS):
        raise ConfigError(f"APP_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {value!r}")
    return value.upper()


def logger_levels(env: Mapping[str, str]) -> dict[str, str]:
    """Per-logger levels: the QUIET_LOGGERS at WARNING (at APP_LOG_LEVEL when that is DEBUG or
    above WARNING), then APP_LOG_LEVELS=logger=LEVEL,... over them (e.g. dbos=INFO)."""
    level = log_level(env)
    levels = {name: "WARNING" if level == "INFO" else level for name in QUIET_LOGGERS}
    value = env.get("APP_LOG_LEVELS", "")
    for entry in value.split(",") if value else []:
        name, _, given = entry.partition("=")
        if not (LOGGER_NAME.fullmatch(name) and given.isascii() and given.upper() in LOG_LEVELS):
            raise ConfigError(
                f"APP_LOG_LEVELS entry {entry!r} is invalid (logger=LEVEL,... with LEVEL one of "
                "DEBUG, INFO, WARNING, ERROR; e.g. dbos=INFO,alembic=INFO)"
            )
        levels[name] = given.upper()
    return levels


def ci(env: Mapping[str, str]) -> bool:
    """Running under CI (CI=true, as CI services set it): no live progress lines."""
    return env.get("CI", "").lower() in ("true", "1")
