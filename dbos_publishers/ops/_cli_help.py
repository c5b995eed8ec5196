"""What `--help` says beyond the options: the publishers declared, the scenarios, the
environment the CLI reads and its exit codes. Cheap: no database driver, no DBOS, no
structlog, so `--help` answers at interpreter speed (the environment is passed in by the CLI;
dbos_publishers._config reads it for every command that runs)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NoReturn

from dbos_publishers._declarations import (
    DEFAULT_PUBLISHERS_FILE,
    PUBLISHERS_FILE_VARIABLE,
    declarations,
    read_publishers_file,
)
from dbos_publishers._errors import AppError

ENVIRONMENT = (
    ("DBOS_SYSTEM_DATABASE_URL", "DBOS's system database (default: a SQLite file here)"),
    ("APP_DATABASE_URL", "the application database (default: a SQLite file here)"),
    (PUBLISHERS_FILE_VARIABLE, "publisher declarations (default: publishers.toml)"),
    ("APP_VERSION, APP_EXECUTOR_ID", "this worker's application version and executor id"),
    ("APP_CONNECTIONS", "the most connections a worker holds ([workers] connections)"),
    ("APP_HEARTBEAT_SEC, APP_LEASE_TTL_SEC", "worker lease timing"),
    ("APP_HTTP_HOST, APP_HTTP_PORT", "the service's HTTP API (port 'off': none)"),
    ("APP_API_TOKEN, APP_ALLOW_NO_TOKEN", "the API's bearer token"),
    ("APP_FAILPOINTS, APP_FAILPOINT_SEED", "failpoints (the crash lab)"),
    ("APP_LOG_FORMAT, APP_LOG_LEVEL", "logs (stderr; the service's on stdout)"),
    ("CI", "true: no live progress line"),
)
EXIT_CODES = (
    (0, "done (or submitted)"),
    (
        1,
        "a batch ended with failed chunks or without a summary; a scenario or a doctor check "
        "failed",
    ),
    (2, "bad input, or a database that cannot be reached (one line on stderr)"),
    (124, "publish --wait --timeout passed (the batch goes on durably)"),
    (130, "interrupted (Ctrl-C)"),
    (141, "the output pipe closed (`| head`)"),
)


class Parser(argparse.ArgumentParser):
    """Exits 2 with one line on bad arguments; its epilog may be computed only when help is
    shown (`epilog_factory`), so reading the publishers file or the scenario catalog costs
    nothing to a command that runs."""

    epilog_factory: Callable[[], str] | None = None

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see --help)\n")

    def format_help(self) -> str:
        if self.epilog_factory is not None:
            self.epilog = self.epilog_factory()
        return super().format_help()


class Formatter(argparse.RawDescriptionHelpFormatter):
    """A default that says something shown after the option's help; the epilog kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "%(default)" in text:
            return text
        return f"{text} (default: %(default)s)".lstrip()


class Version(argparse.Action):
    """--version, looked up only when asked (importlib.metadata costs a tenth of a second)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_args: object, **_kw: object) -> None:
        from importlib import metadata

        try:
            version = metadata.version("dbos-publishers")
        except metadata.PackageNotFoundError:
            version = "unknown (not installed)"
        sys.stdout.write(f"{parser.prog} {version}\n")
        parser.exit(0)


def publishers_line(env: Mapping[str, str]) -> str:
    """The declared publishers, or why the file cannot say (help still works)."""
    path = Path(env.get(PUBLISHERS_FILE_VARIABLE) or DEFAULT_PUBLISHERS_FILE)
    try:
        declared, _queues = declarations(read_publishers_file(path), path)
    except (AppError, OSError, ValueError) as exc:
        return f"publishers: unknown ({exc})"
    return f"publishers ({path}): " + ", ".join(d.name for d in declared)


def top_epilog(env: Mapping[str, str]) -> str:
    width = max(len(name) for name, _ in ENVIRONMENT)
    lines = [publishers_line(env), "", "environment:"]
    lines += [f"  {name:<{width}}  {meaning}" for name, meaning in ENVIRONMENT]
    lines += ["", "exit codes:"]
    lines += [f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES]
    lines += [
        "",
        "The docs have the rest: reference/configuration, guides/submitting-work, reference/cli.",
    ]
    return "\n".join(lines)
