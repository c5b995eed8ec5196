"""`dbos-publishers` (`python -m dbos_publishers`; `python -m app` in the reference service): the
command line other tools call.

Building the parser imports argparse and reads the publishers file, nothing more: `--help`
answers fast, and each handler imports what its command needs (DBOS, SQLAlchemy, FastAPI)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from dbos_publishers._errors import AppError
from dbos_publishers.ops._cli_help import (
    Formatter,
    Parser,
    Version,
    publishers_line,
    top_epilog,
)

if TYPE_CHECKING:
    from dbos_publishers import _runtime as runtime
    from dbos_publishers._config import Settings

PROG = "dbos-publishers"  # the console script; `python -m dbos_publishers` is the same
EXIT_BAD_INPUT = 2
EXIT_BATCH_FAILED = 1
EXIT_TIMEOUT = 124  # as timeout(1): the wait gave up, the batch goes on
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE
SHELLS = ("bash", "zsh", "tcsh")
# store._batch_list.LISTED_STATES, named here so the parser needs no SQLAlchemy import
LISTED_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
LIFECYCLE_COMMANDS = (  # _lifecycle.ACTIONS, named here so the parser needs no DBOS import
    ("cancel", "cancel a batch: nothing more of it is published"),
    ("resume", "resume a cancelled batch where it stopped"),
    ("retry", "re-drive the failed chunks of a finished batch, once"),
)
DESCRIPTION = (
    "Publish batches through durable DBOS queues with exact counters, and read what happened. "
    "Every command reads the same environment as the service (below)."
)


def _parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = Parser(prog=prog, description=DESCRIPTION, formatter_class=Formatter)
    parser.epilog_factory = lambda: top_epilog(os.environ)
    parser.add_argument("--version", action=Version)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    def command(name: str, help_text: str) -> Parser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.formatter_class = Formatter
        assert isinstance(sub, Parser)
        return sub

    command("serve", "run the service (what `dbos start` runs)")
    _publish_arguments(command("publish", "submit a batch to the service"))
    show = command("status", "counters, ledger totals and pending work")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.add_argument("--watch", action="store_true", help="redraw until Ctrl-C")
    show.add_argument("--interval", type=float, default=2.0, help="seconds between redraws")
    crew = command("workers", "worker leases, in-flight work and takeovers")
    crew.add_argument("--json", action="store_true", help="machine-readable output")
    _list_arguments(command("batches", "the batches, newest first: state, counts, duration, rate"))
    _inspect_arguments(command("inspect", "a batch: summary, then its workflows and steps"))
    for action, about in LIFECYCLE_COMMANDS:
        lifecycle_command = command(action, about)
        lifecycle_command.add_argument("batch_id")
        lifecycle_command.add_argument(
            "--json", action="store_true", help="machine-readable output"
        )
    move = command("upgrade", "move older versions' pending work to this APP_VERSION, to run here")
    move.add_argument("--from", dest="from_version", metavar="VERSION", help="only this version's")
    move.add_argument("--json", action="store_true", help="machine-readable output")
    doctor = command("doctor", "check databases, schema, publishers, work, workers, connections")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    completion = command("completion", "print a shell completion script (shtab)")
    completion.add_argument("shell", choices=SHELLS)
    return parser


def _publish_arguments(publish: Parser) -> None:
    publish.epilog_factory = lambda: publishers_line(os.environ)
    publish.add_argument("publisher", help="a declared publisher (listed below)")
    publish.add_argument("--count", type=int, required=True, help="number of messages")
    publish.add_argument("--topic", default="default", help="topic")
    publish.add_argument("--batch-id", help="idempotency key; the same id never publishes twice")
    publish.add_argument(
        "--wait", action="store_true", help="follow the batch to its end and print the summary"
    )
    publish.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help=f"with --wait: give up waiting after SECONDS (exit {EXIT_TIMEOUT}; the batch goes on)",
    )


def _list_arguments(listing: argparse.ArgumentParser) -> None:
    listing.add_argument("--publisher", help="only this publisher's")
    listing.add_argument("--topic", help="only this topic's")
    listing.add_argument("--state", choices=LISTED_STATES, help="only batches in this state")
    listing.add_argument("--since", metavar="WHEN", help="submitted since: 30m, 2h, 7d or ISO time")
    listing.add_argument("--limit", type=int, default=50, help="rows per page (at most 500)")
    listing.add_argument("--after", metavar="CURSOR", help="the page after this one (`next`)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")


def _inspect_arguments(look: argparse.ArgumentParser) -> None:
    look.add_argument("batch_id")
    look.add_argument("--json", action="store_true", help="machine-readable output")
    look.add_argument("--steps", action="store_true", help="every workflow with every step")
    look.add_argument("--failed", action="store_true", help="workflows that failed, failed steps")
    look.add_argument("--replayed", action="store_true", help="steps replayed after a restart")


def main(argv: Sequence[str] | None = None, *, prog: str = PROG) -> int:
    """Run one command (`prog` names the command in help: a service may be run as
    `python -m app`)."""
    return guarded(lambda: _dispatch(argv, prog))


def guarded(dispatch: Callable[[], int]) -> int:
    """Run a command line. Ctrl-C and a closed output pipe end it with at most one line and the
    shell's exit code, never a traceback, whatever the command was doing; a bad input is one
    line and exit 2."""
    try:
        code = _reported(dispatch)
        sys.stdout.flush()  # a pipe closed early fails here, not at interpreter exit
        return code
    except KeyboardInterrupt as exc:
        print(f"interrupted{': ' + str(exc) if str(exc) else ''}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Python's recipe: point stdout at devnull so the exit's own flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _reported(dispatch: Callable[[], int]) -> int:
    try:
        return dispatch()
    except AppError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _dispatch(argv: Sequence[str] | None, prog: str) -> int:
    args = _parser(prog).parse_args(argv)
    args.prog = prog  # a hint names the command as it was typed
    if args.command == "completion":
        import shtab

        print(shtab.complete(_parser(PROG), args.shell))
        return 0
    return _command(args)


def _command(args: argparse.Namespace) -> int:
    # _lifecycle declares a failpoint APP_FAILPOINTS may name: imported before the spec parses.
    from dbos_publishers import _lifecycle as lifecycle  # noqa: F401 - lifecycle: for its declaration
    from dbos_publishers import _runtime as runtime
    from dbos_publishers._config import Settings
    from dbos_publishers._logs import configure_logging

    settings = Settings.from_env()
    if args.command == "doctor":
        configure_logging(settings.log_format, "WARNING")
        return _doctor(args, settings)
    # Imports publisher classes (which may declare failpoints), once for the whole command.
    blueprint = runtime.validate(settings)
    return _run(args, blueprint)


def _run(args: argparse.Namespace, blueprint: runtime.Blueprint) -> int:
    from dbos_publishers._logs import configure_logging
    from dbos_publishers.ops import _fleet_view as fleet
    from dbos_publishers.ops import _service as service
    from dbos_publishers.ops import _status as status

    settings = blueprint.settings
    if args.command == "serve":
        # The service's output is its log: stdout, at the configured level.
        configure_logging(
            settings.log_format, settings.log_level, sys.stdout, dict(settings.log_levels)
        )
        service.serve(blueprint)
        return 0
    configure_logging(settings.log_format, "WARNING")
    if args.command == "publish":
        return _publish(args, settings)
    if args.command == "workers":
        status.require_app_tables(settings)
        snapshot = fleet.gather(settings)
        print(json.dumps(snapshot.to_json(), indent=2) if args.json else fleet.render(snapshot))
        return 0
    if args.command in ("upgrade", *(name for name, _ in LIFECYCLE_COMMANDS)):
        return _operate(args, settings)
    if args.command in ("batches", "inspect"):
        return _batches(args, settings) if args.command == "batches" else _inspect(args, settings)
    return _status(args, settings)


def _inspect(args: argparse.Namespace, settings: Settings) -> int:
    from dbos_publishers.ops import _history as history

    detail = history.Detail(steps=args.steps, failed=args.failed, replayed=args.replayed)
    description = history.describe(settings, args.batch_id)
    print(
        json.dumps(history.to_json(description, detail), indent=2)
        if args.json
        else history.render(description, detail)
    )
    return 0


def _batches(args: argparse.Namespace, settings: Settings) -> int:
    from dbos_publishers.ops import _batch_list as batch_list

    wanted = batch_list.batch_filter(
        publisher=args.publisher,
        topic=args.topic,
        state=args.state,
        since=args.since,
        limit=args.limit,
        after=args.after,
    )
    page = batch_list.gather(settings, wanted)
    print(json.dumps(page.to_json(), indent=2) if args.json else batch_list.render(page))
    if not args.json and (hint := batch_list.next_hint(page)):
        print(hint, file=sys.stderr)
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from dbos_publishers._config import ConfigError
    from dbos_publishers.ops import _status as status
    from dbos_publishers.ops import _watch as watch

    if not args.interval > 0:
        raise ConfigError(f"--interval must be positive, not {args.interval}")
    terminal = sys.stdout.isatty()
    previous = None
    with _screen(args.watch and terminal and not args.json) as show:
        try:
            while True:
                snapshot = status.gather(settings)
                if args.json:
                    text = json.dumps(snapshot.to_json())
                elif args.watch:
                    text = watch.frame(snapshot, previous, args.interval, terminal=terminal)
                else:
                    text = status.render(snapshot, terminal=terminal)
                show(text)
                if not args.watch:
                    return 0
                previous = snapshot
                time.sleep(args.interval)
        except KeyboardInterrupt:  # how --watch ends
            return 0


@contextmanager
def _screen(live: bool) -> Iterator[Callable[[str], None]]:
    """How each frame is shown: on a terminal under --watch, redrawn in place by rich.live (no
    clearing the screen, no flicker); else printed, one after another."""
    if not live:
        yield lambda text: print(text, flush=True)
        return
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    with Live(console=Console(highlight=False), auto_refresh=False) as screen:
        yield lambda text: screen.update(Text(text), refresh=True)


def _operate(args: argparse.Namespace, settings: Settings) -> int:
    """The commands that change work in place (with their failpoints armed, for the lab)."""
    from dbos_publishers import _failpoints as failpoints
    from dbos_publishers import _lifecycle as lifecycle
    from dbos_publishers.ops import _upgrade as upgrade

    failpoints.arm(settings.failpoints, settings.failpoint_seed)
    if args.command == "upgrade":
        moved = upgrade.upgrade(settings, args.from_version)
        print(json.dumps(moved.to_json(), indent=2) if args.json else upgrade.render(moved))
        return 0
    result = lifecycle.act(settings, args.command, args.batch_id)
    print(json.dumps(result.to_json(), indent=2) if args.json else lifecycle.render(result))
    return 0


def _doctor(args: argparse.Namespace, settings: Settings) -> int:
    from dbos_publishers.ops import _doctor as doctor

    checks = doctor.examine(settings)
    print(json.dumps(doctor.to_json(checks), indent=2) if args.json else doctor.render(checks))
    return 0 if all(c.ok for c in checks) else EXIT_BATCH_FAILED


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    from dbos_publishers import _batches as batches
    from dbos_publishers import _failpoints as failpoints
    from dbos_publishers._config import ConfigError, ci
    from dbos_publishers.ops import _follow as follow

    if args.timeout is not None and not (args.wait and args.timeout > 0):
        raise ConfigError(f"--timeout needs --wait and a positive number, not {args.timeout}")
    submission = batches.validate(
        settings, args.publisher, count=args.count, topic=args.topic, batch_id=args.batch_id
    )
    failpoints.arm(settings.failpoints, settings.failpoint_seed)
    batches.submit(settings, submission)
    batch_id = submission.request["batch_id"]
    if not args.wait:
        print(json.dumps({"batch_id": batch_id, "workflow_id": submission.workflow_id}))
        return 0
    try:
        # Before any wait: the id under which the batch now waits durably, whatever happens next.
        print(f"batch {batch_id} queued (workflow {submission.workflow_id})", file=sys.stderr)
        summary = follow.follow(
            settings,
            submission,
            timeout=args.timeout,
            live=sys.stderr.isatty() and not ci(os.environ),
            warn=lambda hint: print(f"warning: {hint}", file=sys.stderr, flush=True),
        )
    except batches.BatchEndedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BATCH_FAILED
    except follow.WaitTimedOutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT
    except KeyboardInterrupt:
        raise KeyboardInterrupt(
            f"stopped waiting; batch {batch_id} goes on durably (follow it again: {args.prog} "
            f"publish {args.publisher} --count {args.count} --topic {args.topic} --batch-id "
            f"{batch_id} --wait)"
        ) from None
    print(json.dumps(summary, indent=2))
    return EXIT_BATCH_FAILED if summary["failed"] else 0
