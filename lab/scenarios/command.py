"""`python -m app scenario list | run`: the crash lab's command, its options checked before any
scenario starts."""

from __future__ import annotations

import argparse
import json

from dbos_publishers._config import ConfigError
from dbos_publishers._logs import configure_logging
from dbos_publishers.ops._tables import render as render_tables
from dbos_publishers.ops._tables import table
from lab.scenarios import runner as scenario_runner
from lab.scenarios.catalog import Scenario, catalog
from lab.scenarios.lab import RunOptions
from lab.scenarios.progress import Progress
from lab.scenarios.report import render

EXIT_FAILED = 1


def run_command(args: argparse.Namespace) -> int:
    configure_logging("json", "WARNING")
    scenarios = catalog()
    if args.action == "list":
        rows = [
            (s.name, s.summary + ("  (broken on purpose: fails)" if s.broken else ""))
            for s in scenarios.values()
        ]
        print(render_tables(table(["scenario", "what it does"], rows)))  # noqa: T201 - its output
        return 0
    chosen = _chosen_scenarios(args, scenarios)
    options = RunOptions(
        backend=args.backend,
        messages=positive(args.messages, "--messages") if args.messages else None,
        seed=_whole(args.seed, "--seed"),
        kills=positive(args.kills, "--kills") if args.kills else None,
        postgres_url=args.postgres_url,
        workers=positive(args.workers, "--workers") if args.workers else None,
    )
    _refuse_sqlite_fleet(chosen, options)
    reports = []
    for scenario in chosen:
        report = scenario_runner.run(scenario, options, Progress())
        reports.append(report)
        if not args.json:
            print(render(report) + "\n", flush=True)  # noqa: T201
    if args.json:
        print(json.dumps([r.to_json() for r in reports], indent=2))  # noqa: T201
    elif len(reports) > 1:
        passed = sum(r.ok for r in reports)
        print(f"{passed} of {len(reports)} scenarios passed on {args.backend}")  # noqa: T201
    return 0 if all(r.ok for r in reports) else EXIT_FAILED


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


def positive(text: str, what: str) -> int:
    if not text.strip().isdigit() or int(text) <= 0:
        raise ConfigError(f"{what} must be a positive whole number, not {text!r}")
    return int(text)
