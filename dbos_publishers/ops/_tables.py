"""Text tables for the command line: columns sized to their content (rich), rendered to a string
so a command prints it at once, to a terminal or a pipe alike."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterable, Sequence

from rich import box
from rich.console import Console
from rich.table import Table

WIDE = 1000  # off a terminal nothing wraps: a pipe or a file gets the whole row


def table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], *, title: str | None = None
) -> Table:
    """A borderless table; a header ending in '>' is right-aligned (numbers)."""
    grid = Table(
        box=box.SIMPLE_HEAD, title=title, title_justify="left", show_edge=False, pad_edge=False
    )
    for header in headers:
        right = header.endswith(">")
        grid.add_column(header.rstrip(">"), justify="right" if right else "left", no_wrap=True)
    for row in rows:
        grid.add_row(*(_cell(value) for value in row))
    return grid


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def render(*parts: Table | str, terminal: bool = False) -> str:
    """The parts one under the other, a blank line between, as plain text (no colour codes);
    `terminal`: as wide as the terminal, else as wide as the content."""
    width = shutil.get_terminal_size().columns if terminal else WIDE
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, highlight=False, soft_wrap=False)
    for i, part in enumerate(parts):
        if i:
            console.print()
        console.print(part)
    return "\n".join(line.rstrip() for line in out.getvalue().rstrip("\n").splitlines())
