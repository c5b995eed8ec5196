"""`python -m app serve | publish | status | inspect | cancel | resume | retry | upgrade | bench`:
the command line other tools call."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from app import (
    batches,
    failpoints,
    fleet,
    history,
    lifecycle,
    runtime,
    service,
    status,
    upgrade,
)
from app.bench import runner
from app.bench.modes import MODES
from app.config import ConfigError, Settings
from app.database import require_reachable
from app.errors import AppError
from app.logs import configure_logging
from app.scenarios import runner as scenario_runner
from app.scenarios.catalog import Scenario, catalog
from app.scenarios.progress import Progress
from app.scenarios.report import render
from app.scenarios.runner import RunOptions

DEFAULT_BENCH_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
CLEAR_SCREEN = "\x1b[H\x1b[2J"
EXIT_BAD_INPUT = 2
EXIT_BATCH_FAILED = 1


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands.add_parser("serve", help="run the service (what `dbos start` runs)")
    publish = commands.add_parser("publish", help="submit a batch to the service")
    publish.add_argument("publisher")
    publish.add_argument("--count", type=int, required=True, help="number of messages")
    publish.add_argument("--topic", default="default", help="topic (default: default)")
    publish.add_argument("--batch-id", help="idempotency key; the same id never publishes twice")
    publish.add_argument("--wait", action="store_true", help="wait and print the summary")
    _bench_arguments(commands.add_parser("bench", help="measure publishing throughput"))
    show = commands.add_parser("status", help="counters, ledger totals and pending work")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.add_argument("--watch", action="store_true", help="redraw until Ctrl-C")
    show.add_argument("--interval", type=float, default=2.0, help="seconds between redraws")
    crew = commands.add_parser("workers", help="worker leases, in-flight work and takeovers")
    crew.add_argument("--json", action="store_true", help="machine-readable output")
    look = commands.add_parser("inspect", help="a batch's workflows and steps, replays marked")
    look.add_argument("batch_id")
    look.add_argument("--json", action="store_true", help="machine-readable output")
    for action, about in (
        ("cancel", "cancel a batch: nothing more of it is published"),
        ("resume", "resume a cancelled batch where it stopped"),
        ("retry", "re-drive the failed chunks of a finished batch, once"),
    ):
        lifecycle_command = commands.add_parser(action, help=about)
        lifecycle_command.add_argument("batch_id")
        lifecycle_command.add_argument(
            "--json", action="store_true", help="machine-readable output"
        )
    move = commands.add_parser(
        "upgrade", help="move older versions' pending work to this APP_VERSION, to run here"
    )
    move.add_argument(
        "--from", dest="from_version", metavar="VERSION", help="only this version's work"
    )
    move.add_argument("--json", action="store_true", help="machine-readable output")
    _scenario_arguments(commands.add_parser("scenario", help="failure-simulation scenarios"))
    return parser


def _scenario_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, parser_class=_Parser)
    actions.add_parser("list", help="the catalog")
    run = actions.add_parser("run", help="run one scenario, or every passing one with --all")
    run.add_argument("name", nargs="?", help="a scenario from `scenario list`")
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
        help="size for the exp7 and per-message modes (default 2000)",
    )
    bench.add_argument("--publishers", type=int, default=4)
    bench.add_argument("--topics", type=int, default=2)
    bench.add_argument("--backends", default="sqlite,postgres")
    bench.add_argument("--modes", default=",".join(MODES))
    bench.add_argument(
        "--workers",
        default="1",
        help=f"worker processes per DBOS mode, comma-separated, each at most {runner.MAX_WORKERS} "
        "(Postgres; raw and SQLite run once, with 1; default 1)",
    )
    bench.add_argument("--postgres-url", default=DEFAULT_BENCH_POSTGRES)
    bench.add_argument("--json", default="bench-results/bench.json", help="where to write JSON")


def _bench_plan(args: argparse.Namespace) -> runner.Plan:
    backends = _choices(args.backends, ("sqlite", "postgres"), "--backends")
    modes = _choices(args.modes, tuple(MODES), "--modes")
    sizes = [_positive(text, "--messages") for text in args.messages.split(",")]
    workers = sorted({_positive(text, "--workers") for text in args.workers.split(",")})
    if workers[-1] > runner.MAX_WORKERS:
        raise ConfigError(f"--workers: at most {runner.MAX_WORKERS} (got {workers[-1]})")
    for value, what in (
        (args.per_message_messages, "--per-message-messages"),
        (args.publishers, "--publishers"),
        (args.topics, "--topics"),
    ):
        _positive(str(value), what)
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
    )


def _choices(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [c for c in chosen if c not in allowed]
    if unknown or not chosen:
        raise ConfigError(f"{what}: choose from {', '.join(allowed)} (got {text!r})")
    return chosen


def _positive(text: str, what: str) -> int:
    if not text.strip().isdigit() or int(text) <= 0:
        raise ConfigError(f"{what} must be a positive whole number, not {text!r}")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "bench":
            configure_logging("json", "WARNING")
            plan = _bench_plan(args)  # refused before anything is printed
            print(runner.HEADER, flush=True)
            runner.run(plan)
            return 0
        if args.command == "scenario":
            configure_logging("json", "WARNING")
            return _scenario(args)
        settings = Settings.from_env()
        # Imports publisher classes (which may declare failpoints), once for the whole command.
        blueprint = runtime.validate(settings)
        return _run(args, blueprint)
    except AppError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _run(args: argparse.Namespace, blueprint: runtime.Blueprint) -> int:
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
        require_reachable(settings.app_db)
        snapshot = fleet.gather(settings)
        print(json.dumps(snapshot.to_json(), indent=2) if args.json else fleet.render(snapshot))
        return 0
    if args.command in ("upgrade", *lifecycle.ACTIONS):
        return _operate(args, settings)
    if args.command == "inspect":
        description = history.describe(settings, args.batch_id)
        print(json.dumps(description, indent=2) if args.json else history.render(description))
        return 0
    return _status(args, settings)


def _status(args: argparse.Namespace, settings: Settings) -> int:
    if not args.interval > 0:
        raise ConfigError(f"--interval must be positive, not {args.interval}")
    try:
        while True:
            snapshot = status.gather(settings)
            text = json.dumps(snapshot.to_json()) if args.json else status.render(snapshot)
            if args.watch and not args.json and sys.stdout.isatty():
                text = CLEAR_SCREEN + text
            print(text, flush=True)
            if not args.watch:
                return 0
            time.sleep(args.interval)
    except KeyboardInterrupt:  # how --watch ends
        return 0


def _operate(args: argparse.Namespace, settings: Settings) -> int:
    """The commands that change work in place (with their failpoints armed, for the lab)."""
    failpoints.arm(settings.failpoints, settings.failpoint_seed)
    if args.command == "upgrade":
        moved = upgrade.upgrade(settings, args.from_version)
        print(json.dumps(moved.to_json(), indent=2) if args.json else upgrade.render(moved))
        return 0
    result = lifecycle.act(settings, args.command, args.batch_id)
    print(json.dumps(result.to_json(), indent=2) if args.json else lifecycle.render(result))
    return 0


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    submission = batches.validate(
        settings, args.publisher, count=args.count, topic=args.topic, batch_id=args.batch_id
    )
    failpoints.arm(settings.failpoints, settings.failpoint_seed)
    batches.submit(settings, submission)
    if not args.wait:
        print(
            json.dumps(
                {"batch_id": submission.request["batch_id"], "workflow_id": submission.workflow_id}
            )
        )
        return 0
    try:
        summary = batches.wait(settings, submission.workflow_id)
    except batches.BatchEndedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BATCH_FAILED
    print(json.dumps(summary, indent=2))
    return EXIT_BATCH_FAILED if summary["failed"] else 0


def _scenario(args: argparse.Namespace) -> int:
    scenarios = catalog()
    if args.action == "list":
        for scenario in scenarios.values():
            mark = "  (broken on purpose: fails)" if scenario.broken else ""
            print(f"{scenario.name:<34} {scenario.summary}{mark}")
        return 0
    chosen = _chosen_scenarios(args, scenarios)
    options = RunOptions(
        backend=args.backend,
        messages=_positive(args.messages, "--messages") if args.messages else None,
        seed=_whole(args.seed, "--seed"),
        kills=_positive(args.kills, "--kills") if args.kills else None,
        postgres_url=args.postgres_url,
        workers=_positive(args.workers, "--workers") if args.workers else None,
    )
    _refuse_sqlite_fleet(chosen, options)
    reports = []
    for scenario in chosen:
        report = scenario_runner.run(scenario, options, Progress())
        reports.append(report)
        if not args.json:
            print(render(report) + "\n", flush=True)
    if args.json:
        print(json.dumps([r.to_json() for r in reports], indent=2))
    elif len(reports) > 1:
        passed = sum(r.ok for r in reports)
        print(f"{passed} of {len(reports)} scenarios passed on {args.backend}")
    return 0 if all(r.ok for r in reports) else EXIT_BATCH_FAILED


def _chosen_scenarios(args: argparse.Namespace, scenarios: dict[str, Scenario]) -> list[Scenario]:
    if args.all == (args.name is not None):
        raise ConfigError("scenario run: give one scenario NAME or --all")
    if args.all:  # multi-worker scenarios need Postgres: --all on SQLite leaves them out
        return [
            s
            for s in scenarios.values()
            if not s.broken and not (s.postgres_only and args.backend == "sqlite")
        ]
    if args.name not in scenarios:
        raise ConfigError(f"unknown scenario {args.name!r} (see `python -m app scenario list`)")
    return [scenarios[args.name]]


def _refuse_sqlite_fleet(chosen: list[Scenario], options: RunOptions) -> None:
    if options.workers and any(not (s.chaos_kills or s.takeover) for s in chosen):
        raise ConfigError("--workers applies to chaos and takeover/* scenarios only")
    if options.backend != "sqlite":
        return
    if options.workers and options.workers > 1:
        raise ConfigError("--workers above 1 needs --backend postgres (SQLite takes one worker)")
    for scenario in chosen:
        if scenario.infra is not None:
            raise ConfigError(
                f"scenario {scenario.name} stops and restarts Postgres: use --backend postgres "
                "(it runs on a Postgres cluster of the lab's own)"
            )
        if scenario.postgres_only:
            raise ConfigError(
                f"scenario {scenario.name} runs several workers: use --backend postgres "
                "(SQLite takes one worker)"
            )


def _whole(text: str, what: str) -> int:
    if not text.strip().isdigit():
        raise ConfigError(f"{what} must be a whole number, not {text!r}")
    return int(text)
