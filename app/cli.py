"""`python -m app`: the command line other tools call.

Building the parser imports argparse and reads the publishers file, nothing more: `--help`
answers fast, and each handler imports what its command needs (DBOS, SQLAlchemy, FastAPI)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from app.cli_help import (
    Formatter,
    Parser,
    Version,
    publishers_line,
    scenario_epilog,
    top_epilog,
)
from app.errors import AppError

if TYPE_CHECKING:
    from app import runtime
    from app.bench import runner
    from app.config import Settings

DEFAULT_BENCH_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
CLEAR_SCREEN = "\x1b[H\x1b[2J"
EXIT_BAD_INPUT = 2
EXIT_BATCH_FAILED = 1
EXIT_TIMEOUT = 124  # as timeout(1): the wait gave up, the batch goes on
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE
SHELLS = ("bash", "zsh", "tcsh")
LIFECYCLE_COMMANDS = (  # app.lifecycle.ACTIONS, named here so the parser needs no DBOS import
    ("cancel", "cancel a batch: nothing more of it is published"),
    ("resume", "resume a cancelled batch where it stopped"),
    ("retry", "re-drive the failed chunks of a finished batch, once"),
)
DESCRIPTION = (
    "Publish batches through durable DBOS queues with exact counters, and read what happened. "
    "Every command reads the same environment as the service (below)."
)


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m app", description=DESCRIPTION, formatter_class=Formatter)
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
    _bench_arguments(command("bench", "measure publishing throughput"))
    show = command("status", "counters, ledger totals and pending work")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.add_argument("--watch", action="store_true", help="redraw until Ctrl-C")
    show.add_argument("--interval", type=float, default=2.0, help="seconds between redraws")
    crew = command("workers", "worker leases, in-flight work and takeovers")
    crew.add_argument("--json", action="store_true", help="machine-readable output")
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
    _scenario_arguments(command("scenario", "failure-simulation scenarios"))
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


def _inspect_arguments(look: argparse.ArgumentParser) -> None:
    look.add_argument("batch_id")
    look.add_argument("--json", action="store_true", help="machine-readable output")
    look.add_argument("--steps", action="store_true", help="every workflow with every step")
    look.add_argument("--failed", action="store_true", help="workflows that failed, failed steps")
    look.add_argument("--replayed", action="store_true", help="steps replayed after a restart")


def _scenario_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, parser_class=Parser)
    actions.add_parser("list", help="the catalog")
    run = actions.add_parser(
        "run", help="run one scenario, or every passing one with --all", formatter_class=Formatter
    )
    assert isinstance(run, Parser)
    run.epilog_factory = scenario_epilog
    run.add_argument("name", nargs="?", help="a scenario (listed below)")
    run.add_argument("--all", action="store_true", help="every scenario except broken/*")
    run.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    run.add_argument("--messages", help="messages per scenario (default: its own size)")
    run.add_argument("--seed", default="0", help="seeds the chaos schedule and pPROB triggers")
    run.add_argument(
        "--kills", help="chaos: how many SIGKILLs (default 20); pg/chaos: how many faults"
    )
    run.add_argument(
        "--workers", help="chaos: that many workers, killed at random (Postgres; default 1)"
    )
    run.add_argument("--postgres-url", default=DEFAULT_BENCH_POSTGRES)
    run.add_argument("--json", action="store_true", help="machine-readable output")


def _bench_arguments(bench: argparse.ArgumentParser) -> None:
    bench.add_argument("--messages", default="100000", help="sizes, comma-separated")
    bench.add_argument(
        "--per-message-messages",
        type=int,
        default=2000,
        help="size for the per-message shapes (dbos-raw-per-message, per-message, exp7; "
        "default 2000)",
    )
    bench.add_argument("--publishers", type=int, default=4)
    bench.add_argument("--topics", type=int, default=2)
    bench.add_argument("--backends", default="sqlite,postgres", help="of sqlite, postgres")
    bench.add_argument("--modes", help="comma-separated (default: every mode, app/bench/modes.py)")
    bench.add_argument(
        "--workers",
        default="1",
        help="worker processes per product mode, comma-separated, each at most the runner's "
        "MAX_WORKERS (Postgres; references and SQLite run with 1)",
    )
    bench.add_argument(
        "--chunk-concurrency",
        default="4",
        help="chunk transactions at once for ceiling, dbos-raw and batched, comma-separated, "
        "each at most 32 (default 4)",
    )
    bench.add_argument(
        "--latency-batches",
        default="20",
        help="100-message batches timed one at a time on an idle service, per backend "
        "(0: skip; default 20)",
    )
    bench.add_argument(
        "--rounds",
        default="1",
        help="measure each group of rows read against each other this many times, its rows "
        "in turn; the table shows each row's median run, the JSON every run's msg/s (at most "
        "9; default 1)",
    )
    bench.add_argument("--postgres-url", default=DEFAULT_BENCH_POSTGRES)
    bench.add_argument("--json", default="bench-results/bench.json", help="where to write JSON")


def _bench_plan(args: argparse.Namespace) -> runner.Plan:
    from pathlib import Path

    from app.bench import runner
    from app.bench.modes import MODES
    from app.config import ConfigError
    from app.scenarios.command import positive

    backends = _choices(args.backends, ("sqlite", "postgres"), "--backends")
    modes = _choices(args.modes or ",".join(MODES), tuple(MODES), "--modes")
    sizes = [positive(text, "--messages") for text in args.messages.split(",")]
    workers = _positive_list(args.workers, "--workers", runner.MAX_WORKERS)
    concurrency = _positive_list(
        args.chunk_concurrency, "--chunk-concurrency", runner.MAX_CHUNK_CONCURRENCY
    )
    rounds = positive(args.rounds, "--rounds")
    if rounds > runner.MAX_ROUNDS:
        raise ConfigError(f"--rounds: at most {runner.MAX_ROUNDS} (got {rounds})")
    latency_batches = args.latency_batches.strip()
    if not latency_batches.isdigit():
        raise ConfigError(
            f"--latency-batches must be a whole number (0 to skip), not {args.latency_batches!r}"
        )
    for value, what in (
        (args.per_message_messages, "--per-message-messages"),
        (args.publishers, "--publishers"),
        (args.topics, "--topics"),
    ):
        positive(str(value), what)
    return runner.Plan(
        backends=backends,
        modes=modes,  # type: ignore[arg-type]
        sizes=sizes,
        per_message_size=args.per_message_messages,
        publishers=args.publishers,
        topics=args.topics,
        postgres_url=args.postgres_url,
        json_path=Path(args.json),
        workers=workers,
        chunk_concurrency=concurrency,
        latency_batches=int(latency_batches),
        rounds=rounds,
    )


def _positive_list(text: str, what: str, most: int) -> list[int]:
    """Distinct positive whole numbers, comma-separated, ascending; at most `most` each."""
    from app.config import ConfigError
    from app.scenarios.command import positive

    values = sorted({positive(part, what) for part in text.split(",")})
    if values[-1] > most:
        raise ConfigError(f"{what}: at most {most} (got {values[-1]})")
    return values


def _choices(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    from app.config import ConfigError

    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [c for c in chosen if c not in allowed]
    if unknown or not chosen:
        raise ConfigError(f"{what}: choose from {', '.join(allowed)} (got {text!r})")
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Ctrl-C and a closed output pipe end it with at most one line and the
    shell's exit code, never a traceback, whatever the command was doing."""
    try:
        code = _dispatch(argv)
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


def _dispatch(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "completion":
        import shtab

        print(shtab.complete(_parser(), args.shell).replace("python -m app", "dbos-publishers"))
        return 0
    try:
        return _command(args)
    except AppError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _command(args: argparse.Namespace) -> int:
    # app.lifecycle declares a failpoint APP_FAILPOINTS may name: imported before the spec parses.
    from app import lifecycle, runtime  # noqa: F401 - lifecycle: for its declaration
    from app.config import Settings
    from app.logs import configure_logging

    if args.command == "bench":
        from app.bench import runner

        configure_logging("json", "WARNING")
        plan = _bench_plan(args)  # refused before anything is printed
        runner.run(plan)
        return 0
    if args.command == "scenario":
        from app.scenarios.command import run_command

        return run_command(args)
    settings = Settings.from_env()
    if args.command == "doctor":
        configure_logging(settings.log_format, "WARNING")
        return _doctor(args, settings)
    # Imports publisher classes (which may declare failpoints), once for the whole command.
    blueprint = runtime.validate(settings)
    return _run(args, blueprint)


def _run(args: argparse.Namespace, blueprint: runtime.Blueprint) -> int:
    from app import fleet, history, service, status
    from app.logs import configure_logging

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
    if args.command == "inspect":
        detail = history.Detail(steps=args.steps, failed=args.failed, replayed=args.replayed)
        description = history.describe(settings, args.batch_id)
        print(
            json.dumps(history.to_json(description, detail), indent=2)
            if args.json
            else history.render(description, detail)
        )
        return 0
    return _status(args, settings)


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from app import status, watch
    from app.config import ConfigError

    if not args.interval > 0:
        raise ConfigError(f"--interval must be positive, not {args.interval}")
    terminal = sys.stdout.isatty()
    previous = None
    try:
        while True:
            snapshot = status.gather(settings)
            if args.json:
                text = json.dumps(snapshot.to_json())
            elif args.watch:
                text = watch.frame(snapshot, previous, args.interval, terminal=terminal)
            else:
                text = status.render(snapshot, terminal=terminal)
            print(CLEAR_SCREEN + text if args.watch and terminal else text, flush=True)
            if not args.watch:
                return 0
            previous = snapshot
            time.sleep(args.interval)
    except KeyboardInterrupt:  # how --watch ends
        return 0


def _operate(args: argparse.Namespace, settings: Settings) -> int:
    """The commands that change work in place (with their failpoints armed, for the lab)."""
    from app import failpoints, lifecycle, upgrade

    failpoints.arm(settings.failpoints, settings.failpoint_seed)
    if args.command == "upgrade":
        moved = upgrade.upgrade(settings, args.from_version)
        print(json.dumps(moved.to_json(), indent=2) if args.json else upgrade.render(moved))
        return 0
    result = lifecycle.act(settings, args.command, args.batch_id)
    print(json.dumps(result.to_json(), indent=2) if args.json else lifecycle.render(result))
    return 0


def _doctor(args: argparse.Namespace, settings: Settings) -> int:
    from app import doctor

    checks = doctor.examine(settings)
    print(json.dumps(doctor.to_json(checks), indent=2) if args.json else doctor.render(checks))
    return 0 if all(c.ok for c in checks) else EXIT_BATCH_FAILED


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    from app import batches, failpoints, follow
    from app.config import ConfigError, ci

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
            f"stopped waiting; batch {batch_id} goes on durably (follow it again: python -m app "
            f"publish {args.publisher} --count {args.count} --topic {args.topic} --batch-id "
            f"{batch_id} --wait)"
        ) from None
    print(json.dumps(summary, indent=2))
    return EXIT_BATCH_FAILED if summary["failed"] else 0
