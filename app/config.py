"""Everything the service reads from its environment and publisher declarations, in one place."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal, TypeAlias, cast, get_args

import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError

from app.errors import BadInputError

APP_NAME = "dbos-publishers"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The `dbos` CLI falls back to sqlite:///{name}.sqlite (dashes become underscores) when
# DBOS_SYSTEM_DATABASE_URL is empty; the service uses the same file so both see the same work.
DEFAULT_SYSTEM_DATABASE_URL = "sqlite:///dbos_publishers.sqlite"
DEFAULT_APP_DATABASE_URL = "sqlite:///dbos_publishers_app.sqlite"
DEFAULT_PUBLISHERS_FILE = PROJECT_ROOT / "publishers.toml"

# Used with fullmatch: `$` would let a trailing newline through.
PUBLISHER_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")
TOPIC_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
BATCH_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?")
EXECUTOR_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")

MAX_POLLING_INTERVAL_SEC = 60
MAX_PORT = 65535
MAX_LEASE_SEC = 3600
MAX_CHUNK_SIZE = 100_000  # one chunk is one transaction and one step output held in memory
MAX_CONCURRENCY = 256  # workflows of one queue a worker runs at once
DEFAULT_CONNECTIONS = 24  # per worker: three workers, the CLI and a lab fit under Postgres's 100
MAX_CONNECTIONS = 1000

LogFormat = Literal["auto", "json", "console"]
Backend = Literal["sqlite", "postgresql"]
# A [publishers.options] value as TOML gives it: scalars, arrays and tables, nested.
OptionValue: TypeAlias = "str | int | float | bool | list[OptionValue] | dict[str, OptionValue]"
# The same, stored frozen in a declaration: arrays as tuples, tables as read-only mappings.
FrozenOption: TypeAlias = (
    "str | int | float | bool | tuple[FrozenOption, ...] | Mapping[str, FrozenOption]"
)


class ConfigError(BadInputError):
    """A setting is missing or malformed; the message names it."""


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
        if not url.database:
            raise ConfigError(f"{label}: a postgresql URL must name a database")
        if url.drivername == "postgres":
            raw = url.set(drivername="postgresql").render_as_string(hide_password=False)
        return cls(raw, label)


@dataclass(frozen=True)
class PublisherDeclaration:
    """One named publisher instance: its stable name, its class, and its tuning."""

    name: str
    class_path: str
    chunk_size: int
    # Read-only all the way down; not hashed (a mapping is not hashable).
    options: Mapping[str, FrozenOption] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )

    @property
    def option_map(self) -> dict[str, OptionValue]:
        """The options as plain dicts and lists, a fresh copy for each caller."""
        return {key: _thaw(value) for key, value in self.options.items()}


@dataclass(frozen=True)
class QueueSettings:
    chunk_concurrency: int = 8
    batch_concurrency: int = 4
    polling_interval_sec: float = 0.2


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
    application_version: str = "1"
    http_host: str = "127.0.0.1"
    http_port: int | None = None  # None: no HTTP API
    api_token: str | None = None
    executor_id: str | None = None  # None: derived from host and process at start
    leases: LeaseSettings = field(default_factory=LeaseSettings)
    connections: int = DEFAULT_CONNECTIONS  # the most this worker holds, both databases together

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        publishers_file = Path(env.get("APP_PUBLISHERS_FILE") or DEFAULT_PUBLISHERS_FILE)
        publishers, queues = load_declarations(publishers_file)
        worker_table = load_worker_table(publishers_file)
        leases = _lease_settings(worker_table, env)
        system_db, app_db = database_urls_from_env(env)
        return cls(
            system_db=system_db,
            app_db=app_db,
            publishers=publishers,
            queues=queues,
            failpoints=env.get("APP_FAILPOINTS", "").strip(),
            failpoint_seed=_int(env.get("APP_FAILPOINT_SEED", "0"), "APP_FAILPOINT_SEED"),
            log_format=_log_format(env.get("APP_LOG_FORMAT", "auto")),
            log_level=_log_level(env.get("APP_LOG_LEVEL", "INFO")),
            application_version=env.get("APP_VERSION") or "1",
            http_host=env.get("APP_HTTP_HOST") or "127.0.0.1",
            http_port=_http_port(env.get("APP_HTTP_PORT") or "8000"),
            api_token=env.get("APP_API_TOKEN") or None,
            executor_id=_executor_id(env.get("APP_EXECUTOR_ID", "")),
            leases=leases,
            connections=_connections(worker_table, env),
        )

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
            env.get("DBOS_SYSTEM_DATABASE_URL") or DEFAULT_SYSTEM_DATABASE_URL,
            "DBOS_SYSTEM_DATABASE_URL",
        ),
        DatabaseUrl.parse(
            env.get("APP_DATABASE_URL") or DEFAULT_APP_DATABASE_URL, "APP_DATABASE_URL"
        ),
    )


def _executor_id(value: str) -> str | None:
    if not value:
        return None
    if not EXECUTOR_ID.fullmatch(value):
        raise ConfigError(
            f"APP_EXECUTOR_ID {value!r} is invalid (letter or digit first, then letters, digits, "
            ". _ : -; at most 128 characters)"
        )
    return value


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
    budget's floor depends on the queues and is checked with them, by app.connections)."""
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


def _http_port(value: str) -> int | None:
    if value == "off":
        return None
    port = _int(value, "APP_HTTP_PORT")
    if not 0 < port <= MAX_PORT:
        raise ConfigError(f"APP_HTTP_PORT must be 1-65535 or 'off', not '{value}'")
    return port


def _int(value: str, what: str) -> int:
    # Digits only: int() would also take ' 8000', '8_000' and '٨٠٠٠'.
    if not re.fullmatch(r"-?[0-9]+", value):
        raise ConfigError(f"{what} must be an integer, not '{value}'")
    return int(value)


def _log_format(value: str) -> LogFormat:
    for known in get_args(LogFormat):
        if value == known:
            return cast(LogFormat, known)
    raise ConfigError(f"APP_LOG_FORMAT must be auto, json or console, not '{value}'")


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"APP_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not '{value}'")
    return level


def _read_toml(path: Path) -> dict[str, object]:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"publishers file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"publishers file {path} is a directory") from None
    except UnicodeDecodeError:
        raise ConfigError(f"publishers file {path} is not UTF-8 text") from None
    except PermissionError:
        raise ConfigError(f"publishers file {path} cannot be read (permission denied)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"publishers file {path} is not valid TOML: {exc}") from None


def load_worker_table(path: Path) -> Mapping[str, object]:
    """The [workers] table of the publishers file (lease tuning); empty when absent."""
    table = _read_toml(path).get("workers", {})
    if not isinstance(table, dict):
        raise ConfigError("[workers] must be a table")
    _only_keys(table, {"heartbeat_sec", "lease_ttl_sec", "connections"}, "[workers]")
    return table


def load_declarations(path: Path) -> tuple[tuple[PublisherDeclaration, ...], QueueSettings]:
    """Read publisher declarations and queue tuning from a TOML file, refusing anything odd."""
    data = _read_toml(path)
    _only_keys(data, {"defaults", "queues", "workers", "publishers"}, str(path))
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError("[defaults] must be a table")
    _only_keys(defaults, {"chunk_size"}, "[defaults]")
    default_chunk = _positive_int(
        defaults.get("chunk_size", 500), "[defaults] chunk_size", MAX_CHUNK_SIZE
    )
    entries = data.get("publishers", [])
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"publishers file {path} declares no [[publishers]]")
    publishers = tuple(_declaration(entry, default_chunk) for entry in entries)
    _refuse_duplicates(publishers)
    return publishers, _queue_settings(data.get("queues", {}))


def _declaration(entry: object, default_chunk: int) -> PublisherDeclaration:
    if not isinstance(entry, dict):
        raise ConfigError("each [[publishers]] entry must be a table")
    _only_keys(entry, {"name", "class", "chunk_size", "options"}, "[[publishers]]")
    name = entry.get("name")
    if not isinstance(name, str) or not PUBLISHER_NAME.fullmatch(name):
        raise ConfigError(
            f"publisher name {name!r} is invalid (lowercase letter first, then a-z 0-9 _ -, "
            "at most 40 characters)"
        )
    class_path = entry.get("class", "app.publishers.events:EventPublisher")
    if not isinstance(class_path, str) or ":" not in class_path:
        raise ConfigError(f"publisher '{name}': class must look like 'package.module:ClassName'")
    chunk_size = _positive_int(
        entry.get("chunk_size", default_chunk), f"publisher '{name}' chunk_size", MAX_CHUNK_SIZE
    )
    return PublisherDeclaration(
        name=name,
        class_path=class_path,
        chunk_size=chunk_size,
        options=_options(entry.get("options", {}), name),
    )


def _options(raw: object, publisher: str) -> Mapping[str, FrozenOption]:
    """A publisher's [publishers.options] table, frozen; nested arrays and tables are kept for
    the class's options model to check, anything TOML has beyond JSON's types is refused."""
    if not isinstance(raw, dict):
        raise ConfigError(f"publisher '{publisher}': options must be a table")
    return MappingProxyType(
        {key: _freeze(value, key, publisher) for key, value in sorted(raw.items())}
    )


def _freeze(value: object, where: str, publisher: str) -> FrozenOption:
    if isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list):
        return tuple(_freeze(item, f"{where}[{i}]", publisher) for i, item in enumerate(value))
    if isinstance(value, dict):
        return MappingProxyType(
            {key: _freeze(item, f"{where}.{key}", publisher) for key, item in value.items()}
        )
    raise ConfigError(
        f"publisher '{publisher}': option '{where}' must be a string, number, boolean, array or "
        f"table, not {type(value).__name__}"
    )


def _thaw(value: FrozenOption) -> OptionValue:
    if isinstance(value, tuple):
        return [_thaw(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _thaw(item) for key, item in value.items()}
    return value


def _refuse_duplicates(publishers: tuple[PublisherDeclaration, ...]) -> None:
    seen: set[str] = set()
    for declaration in publishers:
        if declaration.name in seen:
            raise ConfigError(f"publisher '{declaration.name}' is declared twice")
        seen.add(declaration.name)


def _queue_settings(raw: object) -> QueueSettings:
    if not isinstance(raw, dict):
        raise ConfigError("[queues] must be a table")
    _only_keys(raw, {"chunk_concurrency", "batch_concurrency", "polling_interval_sec"}, "[queues]")
    base = QueueSettings()
    interval = raw.get("polling_interval_sec", base.polling_interval_sec)
    if (
        not isinstance(interval, int | float)
        or isinstance(interval, bool)
        or not 0 < interval <= MAX_POLLING_INTERVAL_SEC
    ):
        raise ConfigError("[queues] polling_interval_sec must be a number in (0, 60]")
    return QueueSettings(
        chunk_concurrency=_positive_int(
            raw.get("chunk_concurrency", base.chunk_concurrency),
            "[queues] chunk_concurrency",
            MAX_CONCURRENCY,
        ),
        batch_concurrency=_positive_int(
            raw.get("batch_concurrency", base.batch_concurrency),
            "[queues] batch_concurrency",
            MAX_CONCURRENCY,
        ),
        polling_interval_sec=float(interval),
    )


def _positive_int(value: object, what: str, most: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= most:
        raise ConfigError(f"{what} must be a whole number in [1, {most}], not {value!r}")
    return value


def _only_keys(table: Mapping[str, object], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
