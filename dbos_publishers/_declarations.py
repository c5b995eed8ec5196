"""The publishers file: which publishers run, their tuning, and the queues' tuning, read from
TOML and refused in one line when anything is odd (dbos_publishers._config reads the rest)."""

from __future__ import annotations

import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TypeAlias

from dbos_publishers._errors import ConfigError

PUBLISHERS_FILE_VARIABLE = "APP_PUBLISHERS_FILE"
# Read from the working directory, as `dbos start` runs the service from the folder it names.
DEFAULT_PUBLISHERS_FILE = Path("publishers.toml")
# Declarations for hundreds of publishers take a few KiB; a bigger file is a wrong path (a log, a
# dump, /dev/zero), and reading it whole could exhaust memory before TOML says no.
MAX_PUBLISHERS_FILE_BYTES = 1024 * 1024
# Used with fullmatch: `$` would let a trailing newline through.
PUBLISHER_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")
MAX_POLLING_INTERVAL_SEC = 60
MAX_CHUNK_SIZE = 100_000  # one chunk is one transaction and one step output held in memory
# Chosen by measurement (docs/decisions/counter-deltas.md): each chunk costs a workflow's fixed
# CPU, so at 500 messages the service ran at 34 % of its throughput at 2,000, and 1,000 at 56 %.
DEFAULT_CHUNK_SIZE = 2000
MAX_CONCURRENCY = 256  # workflows of one queue a worker runs at once

# A [publishers.options] value as TOML gives it: scalars, arrays and tables, nested.
OptionValue: TypeAlias = "str | int | float | bool | list[OptionValue] | dict[str, OptionValue]"
# The same, stored frozen in a declaration: arrays as tuples, tables as read-only mappings.
FrozenOption: TypeAlias = (
    "str | int | float | bool | tuple[FrozenOption, ...] | Mapping[str, FrozenOption]"
)


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


# Chunk workflows a worker runs per chunk transaction it runs at once (`[queues] chunk_prefetch`):
# a chunk dequeued ahead waits, built, for the next free transaction slot, so a slot never idles
# until the queue's next poll. Measured (1M messages, 2,000-message chunks, Postgres): +44 % at 4
# transactions at once, +42 % at 8; with 1-message chunks 1 is better (60-63 against 68-70 msg/s:
# the extra threads only cost CPU where the transaction is tiny).
CHUNK_PREFETCH = 2
MAX_CHUNK_PREFETCH = 4


@dataclass(frozen=True)
class QueueSettings:
    chunk_concurrency: int = 8  # chunk transactions at once per worker
    batch_concurrency: int = 4
    polling_interval_sec: float = 0.05
    chunk_prefetch: int = CHUNK_PREFETCH

    @property
    def chunk_workflows(self) -> int:
        """Chunk workflows a worker runs at once: `chunk_prefetch` per transaction slot."""
        return self.chunk_concurrency * self.chunk_prefetch


def read_publishers_file(path: Path) -> dict[str, object]:
    """The file's TOML: a regular UTF-8 file of at most MAX_PUBLISHERS_FILE_BYTES, else one line
    saying what it is instead."""
    text = _publishers_text(path)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{_named(path)} is not valid TOML: {exc}") from None


def _publishers_text(path: Path) -> str:
    try:
        kind = path.stat().st_mode  # before opening: opening a FIFO would wait for a writer
        if stat.S_ISDIR(kind):
            raise ConfigError(f"{_named(path)} is a directory")
        if not stat.S_ISREG(kind):
            raise ConfigError(f"{_named(path)} is not a regular file")
        with path.open("rb") as file:
            data = file.read(MAX_PUBLISHERS_FILE_BYTES + 1)  # a size that stat may not know
    except (FileNotFoundError, NotADirectoryError):
        raise ConfigError(f"{_named(path)} does not exist") from None
    except PermissionError:
        raise ConfigError(f"{_named(path)} cannot be read (permission denied)") from None
    except OSError as exc:
        raise ConfigError(f"{_named(path)} cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_PUBLISHERS_FILE_BYTES:
        raise ConfigError(f"{_named(path)} is over the 1 MiB a publishers file may take")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{_named(path)} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def _named(path: Path) -> str:
    return f"publishers file {path} ({PUBLISHERS_FILE_VARIABLE})"


def worker_table(data: Mapping[str, object]) -> Mapping[str, object]:
    """The [workers] table of the publishers file (lease tuning); empty when absent."""
    table = data.get("workers", {})
    if not isinstance(table, dict):
        raise ConfigError("[workers] must be a table")
    only_keys(table, {"heartbeat_sec", "lease_ttl_sec", "connections"}, "[workers]")
    return table


def load_declarations(path: Path) -> tuple[tuple[PublisherDeclaration, ...], QueueSettings]:
    """Read publisher declarations and queue tuning from a TOML file, refusing anything odd."""
    return declarations(read_publishers_file(path), path)


def declarations(
    data: Mapping[str, object], path: Path
) -> tuple[tuple[PublisherDeclaration, ...], QueueSettings]:
    """Publisher declarations and queue tuning from the file's TOML, refusing anything odd."""
    only_keys(data, {"defaults", "queues", "workers", "publishers"}, str(path))
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError("[defaults] must be a table")
    only_keys(defaults, {"chunk_size"}, "[defaults]")
    default_chunk = _positive_int(
        defaults.get("chunk_size", DEFAULT_CHUNK_SIZE), "[defaults] chunk_size", MAX_CHUNK_SIZE
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
    only_keys(entry, {"name", "class", "chunk_size", "options"}, "[[publishers]]")
    name = entry.get("name")
    if not isinstance(name, str) or not PUBLISHER_NAME.fullmatch(name):
        raise ConfigError(
            f"publisher name {name!r} is invalid (lowercase letter first, then a-z 0-9 _ -, "
            "at most 40 characters)"
        )
    class_path = entry.get("class", "dbos_publishers.contrib.events:EventPublisher")
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
    keys = {"chunk_concurrency", "batch_concurrency", "polling_interval_sec", "chunk_prefetch"}
    only_keys(raw, keys, "[queues]")
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
        chunk_prefetch=_positive_int(
            raw.get("chunk_prefetch", base.chunk_prefetch),
            "[queues] chunk_prefetch",
            MAX_CHUNK_PREFETCH,
        ),
    )


def _positive_int(value: object, what: str, most: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= most:
        raise ConfigError(f"{what} must be a whole number in [1, {most}], not {value!r}")
    return value


def only_keys(table: Mapping[str, object], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
