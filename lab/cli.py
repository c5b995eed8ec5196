"""`python -m lab`: the crash lab's scenarios and the benchmark, run against the reference
service in this repository (never part of the framework's wheel)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dbos_publishers.ops._cli import guarded
from dbos_publishers.ops._cli_help import Formatter, Parser

if TYPE_CHECKING:
    from lab.bench.plan import Plan

PROG = "python -m lab"
DEFAULT_BENCH_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description=__doc__, formatter_class=Formatter)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, about, arguments in (
        ("scenario", "failure-simulation scenarios", _scenario_arguments),
        ("bench", "measure publishing throughput", _bench_arguments),
    ):
        sub = commands.add_parser(name, help=about, description=about)
        sub.formatter_class = Formatter
        arguments(sub)
    return parser


def scenario_epilog() -> str:
    from lab.scenarios.catalog import catalog  # imports the failpoint catalog: only for help

    names = [s.name for s in catalog().values()]
    return "scenarios (`scenario list` says what each does):\n  " + "\n  ".join(names)


def main(argv: Sequence[str] | None = None) -> int:
    return guarded(lambda: _command(_parser().parse_args(argv)))


def _command(args: argparse.Namespace) -> int:
    from dbos_publishers import _lifecycle  # noqa: F401 - declares a failpoint a spec may name
    from dbos_publishers._logs import configure_logging

    if args.command == "bench":
        from lab.bench import runner

        configure_logging("json", "WARNING")
        plan = _bench_plan(args)  # refused before anything is printed
        runner.run(plan)
        return 0
    from lab.scenarios.command import run_command

    return run_command(args)


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
    bench.add_argument("--modes", help="comma-separated (default: every mode, lab/bench/modes.py)")
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


def _bench_plan(args: argparse.Namespace) -> Plan:
    from pathlib import Path

    from dbos_publishers._config import ConfigError
    from lab.bench import runner
    from lab.bench.modes import MODES
    from lab.bench.plan import Plan
    from lab.scenarios.command import positive

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
    return Plan(
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
    from dbos_publishers._config import ConfigError
    from lab.scenarios.command import positive

    values = sorted({positive(part, what) for part in text.split(",")})
    if values[-1] > most:
        raise ConfigError(f"{what}: at most {most} (got {values[-1]})")
    return values


def _choices(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    from dbos_publishers._config import ConfigError

    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [c for c in chosen if c not in allowed]
    if unknown or not chosen:
        raise ConfigError(f"{what}: choose from {', '.join(allowed)} (got {text!r})")
    return chosen
