"""MkDocs hook: reference tables generated from the code at build time, so they cannot drift.

A page asks for one with a marker on a line of its own, `<!-- generated:NAME -->`:

- `cli-options`: every command of the framework CLI (`dbos_publishers.ops._cli._parser()`) with
  its arguments, defaults and help, as `--help` has them;
- `lab-options`: the same for `python -m lab` (`lab.cli._parser()`);
- `http-routes`: every operation of the served OpenAPI spec (`create_app(...).openapi()`) with
  its status codes, and the routes the spec leaves out;
- `app-tables`: every table of the application database (`dbos_publishers.store._schema`).

An unknown marker, or code that no longer builds the table, fails the build.
"""

# The code is imported only when a page asks for its table, once the repository (the lab's home)
# is on sys.path: so no import at the top.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^<!-- generated:([a-z-]+) -->$", re.MULTILINE)


def on_page_markdown(markdown: str, **_kwargs: Any) -> str:
    return MARKER.sub(lambda match: _generate(match.group(1)), markdown)


def _generate(name: str) -> str:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # the lab is not installed: it lives in the repository
    generators: dict[str, Callable[[], str]] = {
        "cli-options": _cli_options,
        "lab-options": _lab_options,
        "http-routes": _http_routes,
        "app-tables": _app_tables,
    }
    if name not in generators:
        raise ValueError(f"unknown generated table {name!r} (known: {', '.join(generators)})")
    return generators[name]()


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _commands(parser: argparse.ArgumentParser, prefix: str) -> Iterator[tuple[str, Any]]:
    """(command, its parser) for every subcommand, nested ones as `scenario run`."""
    for action in parser._actions:  # argparse keeps no public list of its subcommands
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix} {name}".strip(), sub
                yield from _commands(sub, f"{prefix} {name}")


def _arguments(parser: argparse.ArgumentParser) -> list[str]:
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        name = ", ".join(action.option_strings) or action.metavar or action.dest
        if action.choices is not None:
            name += " {" + ",".join(map(str, action.choices)) + "}"
        elif action.option_strings and action.nargs != 0:
            name += f" {action.metavar or action.dest.upper()}"
        default = action.default
        shown = "" if default in (None, False, argparse.SUPPRESS) else f"`{default}`"
        about = (action.help or "").replace("%(default)s", str(default))
        required = " (required)" if action.required and action.option_strings else ""
        rows.append(f"| `{_cell(name)}` | {_cell(shown)} | {_cell(about)}{required} |")
    return rows


def _options_tables(parser: argparse.ArgumentParser, prog: str) -> str:
    out = []
    for command, sub in _commands(parser, ""):
        rows = _arguments(sub)
        out.append(f"#### `{prog} {command}`\n")
        if sub.description:
            out.append(f"{sub.description}\n")
        if rows:
            out += ["| argument | default | meaning |", "|---|---|---|", *rows, ""]
        else:
            out.append("No arguments.\n")
    return "\n".join(out)


def _cli_options() -> str:
    from dbos_publishers.ops._cli import _parser

    return _options_tables(_parser(), "dbos-publishers")


def _lab_options() -> str:
    from lab.cli import _parser

    return _options_tables(_parser(), "python -m lab")


def api_app() -> Any:
    """The service's FastAPI app as `serve` builds it (with a token, so the spec shows 401s),
    on throwaway SQLite URLs it never opens, and the shipped publishers file."""
    from dbos_publishers._config import Settings
    from dbos_publishers.ops._api import create_app

    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings.from_env(
            {
                "DBOS_SYSTEM_DATABASE_URL": f"sqlite:///{scratch}/s.sqlite",
                "APP_DATABASE_URL": f"sqlite:///{scratch}/a.sqlite",
                "APP_PUBLISHERS_FILE": str(ROOT / "publishers.toml"),
            }
        )
        return create_app(settings, None, token="t0ken")  # noqa: S106 - the spec only


def route_paths(routes: list[Any], prefix: str = "") -> set[str]:
    """Every path the app serves: routes, mounts, and the routes of included routers (which
    newer FastAPI keeps behind a wrapper with the router as `original_router`)."""
    paths: set[str] = set()
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            context = getattr(route, "include_context", None)
            paths |= route_paths(included.routes, prefix + getattr(context, "prefix", ""))
        elif getattr(route, "path", None):
            paths.add(prefix + route.path)
    return paths


def _http_routes() -> str:
    app = api_app()
    spec = app.openapi()
    rows = ["| method | path | what it does | answers |", "|---|---|---|---|"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            about = (operation.get("description") or operation["summary"]).split("\n")[0]
            codes = ", ".join(sorted(operation["responses"]))
            rows.append(f"| {method.upper()} | `{path}` | {_cell(about)} | {codes} |")
    outside = sorted(route_paths(app.routes) - set(spec["paths"]))
    rows += [
        "",
        "Served beside them, outside the spec (pages, their files and the spec itself, open to "
        "anyone): " + ", ".join(f"`{path}`" for path in outside) + ".",
        "",
        "The codes are the spec's with `APP_API_TOKEN` set; without a token no route answers 401.",
    ]
    return "\n".join(rows)


def _app_tables() -> str:
    from dbos_publishers.store._schema import metadata

    out = []
    for table in metadata.sorted_tables:
        keys = {c.name for c in table.primary_key.columns}
        columns = ", ".join(
            f"`{c.name}`{' (key)' if c.name in keys else ''} {c.type}" for c in table.columns
        )
        out.append(f"| `{table.name}` | {_cell(columns)} |")
    return "\n".join(["| table | columns |", "|---|---|", *out])
