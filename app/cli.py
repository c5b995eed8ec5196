"""`python -m app serve | publish | status`: the command-line contract other tools call."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import NoReturn

from app import batches, failpoints, service, status
from app.config import ConfigError, Settings
from app.failpoints import FailpointSpecError
from app.logs import configure_logging
from app.runtime import OrphanedWorkError

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
    show = commands.add_parser("status", help="counters, ledger totals and pending work")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        failpoints.parse(settings.failpoints)
        return _run(args, settings)
    except (ConfigError, FailpointSpecError, OrphanedWorkError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _run(args: argparse.Namespace, settings: Settings) -> int:
    configure_logging(
        settings.log_format, settings.log_level if args.command == "serve" else "WARNING"
    )
    if args.command == "serve":
        service.serve(settings)
        return 0
    if args.command == "publish":
        return _publish(args, settings)
    snapshot = status.gather(settings)
    print(json.dumps(snapshot, indent=2) if args.json else status.render(snapshot))
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
    summary = batches.wait(settings, submission.workflow_id)
    print(json.dumps(summary, indent=2))
    return EXIT_BATCH_FAILED if summary["failed"] else 0
