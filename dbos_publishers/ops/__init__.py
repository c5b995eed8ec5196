"""Operations: the CLI, the HTTP API, the dashboard and the read models every service built on the
framework runs. `main` is the command line (`dbos-publishers`, `python -m dbos_publishers`)."""

from dbos_publishers.ops._cli import main

__all__ = ["main"]
