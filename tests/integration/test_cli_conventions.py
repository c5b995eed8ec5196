"""The CLI's conventions: help that names defaults, publishers, scenarios, environment and exit
codes (and survives a broken publishers file); --version; completion scripts; publish --wait's
id-before-wait, --timeout and no-service hint; inspect's summary and filters; doctor."""

from __future__ import annotations

import json
import time
from importlib import metadata
from pathlib import Path

import pytest

from dbos_publishers import _lifecycle as lifecycle
from dbos_publishers import _migrate as migrate
from dbos_publishers.ops import _cli as cli
from dbos_publishers.ops import _follow as follow
from dbos_publishers.ops import _work as work
from tests.helpers import CliRun, InProcessCli, ServiceRunner


def _one_error_line(done: CliRun, fragment: str) -> None:
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert fragment in done.stderr and done.stdout == ""


def _messages(done: CliRun) -> list[str]:
    """stderr without the JSON log records."""
    return [line for line in done.stderr.splitlines() if not line.startswith("{")]


def test_help_names_publishers_environment_and_exit_codes(cli: InProcessCli) -> None:
    done = cli("--help")
    assert (done.returncode, done.stderr) == (0, "")
    assert "publishers (" in done.stdout and "): orders" in done.stdout
    for text in ("DBOS_SYSTEM_DATABASE_URL", "APP_PUBLISHERS_FILE", "CI", "exit codes:"):
        assert text in done.stdout
    for code in ("124", "130", "141"):
        assert f"  {code}  " in done.stdout


def test_subcommand_help_shows_defaults_choices_publishers_and_scenarios(
    cli: InProcessCli,
) -> None:
    publish = cli("publish", "--help").stdout
    assert "topic (default: default)" in publish and "): orders" in publish
    status = cli("status", "--help").stdout
    assert "seconds between redraws (default: 2.0)" in status
    run = cli("scenario", "run", "--help").stdout
    assert "{sqlite,postgres}" in run and "chaos" in run and "broken/counter-outside-tx" in run


def test_help_still_works_with_a_broken_publishers_file(cli: InProcessCli, tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[[publishers]\n")
    done = cli("--help", APP_PUBLISHERS_FILE=str(broken))
    assert done.returncode == 0
    assert "publishers: unknown (publishers file" in done.stdout and "not valid TOML" in done.stdout


def test_version(cli: InProcessCli) -> None:
    done = cli("--version")
    assert (done.returncode, done.stdout) == (
        0,
        f"python -m app {metadata.version('dbos-publishers')}\n",
    )


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_scripts_know_the_commands_and_options(cli: InProcessCli, shell: str) -> None:
    done = cli("completion", shell)
    assert done.returncode == 0, done.stderr
    assert "dbos-publishers" in done.stdout and "python -m app" not in done.stdout
    for word in ("publish", "doctor", "inspect", "--replayed", "--timeout"):
        assert word in done.stdout


def test_completion_for_an_unknown_shell_is_one_line(cli: InProcessCli) -> None:
    _one_error_line(cli("completion", "fish"), "invalid choice: 'fish'")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--timeout", "5"], "--timeout needs --wait"),
        (["--wait", "--timeout", "0"], "--timeout needs --wait and a positive number, not 0"),
        (["--wait", "--timeout", "soon"], "invalid float value: 'soon'"),
    ],
)
def test_bad_timeouts_are_refused_before_anything_is_submitted(
    cli: InProcessCli, tmp_path: Path, args: list[str], fragment: str
) -> None:
    _one_error_line(cli("publish", "orders", "--count", "5", *args), fragment)
    assert not (tmp_path / "system.sqlite").exists()


def test_publish_wait_without_a_service_prints_the_id_hints_and_times_out(
    cli: InProcessCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(follow, "HINT_AFTER_SEC", 0.0)
    done = cli(
        "publish", "orders", "--count", "5", "--batch-id", "lonely", "--wait", "--timeout", "1"
    )
    assert done.returncode == 124, done.stderr
    assert done.stdout == ""
    queued, hint, gave_up = _messages(done)
    assert queued == "batch lonely queued (workflow batch-lonely)"
    assert hint == (
        "warning: no service has picked up batch lonely: is `dbos start` running against this "
        "database?"
    )
    assert gave_up.startswith("error: gave up waiting after 1 s: batch lonely is ENQUEUED")
    assert "msg/s" not in done.stderr  # no live line off a terminal


def test_doctor_names_the_problem_and_the_command_that_fixes_it(
    cli: InProcessCli, sqlite_runner: ServiceRunner
) -> None:
    fresh = cli("doctor")
    assert fresh.returncode == 1
    assert "PROBLEM  DBOS_SYSTEM_DATABASE_URL: sqlite file" in fresh.stdout
    assert "fix: dbos start" in fresh.stdout

    migrate.upgrade_all(sqlite_runner.settings())  # as `dbos migrate` does
    done = cli("doctor", "--json")
    assert done.returncode == 1
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["migrations"]["ok"] and checks["publishers"]["ok"]
    assert checks["queue workers"] == {
        "name": "queue workers",
        "ok": False,
        "detail": "no worker holds a live lease; 0 workflows wait",
        "fix": "dbos start",
    }


def test_doctor_refuses_bad_input_with_exit_2(cli: InProcessCli) -> None:
    _one_error_line(cli("doctor", "--verbose"), "unrecognized arguments: --verbose")
    _one_error_line(cli("doctor", APP_LOG_FORMAT="xml"), "APP_LOG_FORMAT")


def test_the_parser_names_every_lifecycle_action() -> None:
    """The parser lists them without importing _lifecycle (DBOS): the two lists agree."""
    assert tuple(name for name, _ in cli.LIFECYCLE_COMMANDS) == lifecycle.ACTIONS


def test_workers_before_any_service_is_one_line(cli: InProcessCli) -> None:
    _one_error_line(cli("workers"), "has no application tables yet: run `dbos migrate`")


FAILS_IN_INIT = """
from dbos_publishers.contrib.events import EventPublisher


class Failing(EventPublisher):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.options.model_dump().get("fail", True):
            raise RuntimeError("no credentials for the broker\\nsecond line of the reason")


class Fine(Failing):
    def __init__(self, *args, **kwargs):
        EventPublisher.__init__(self, *args, **kwargs)
"""


@pytest.mark.parametrize("fails", [True, False], ids=["fails", "broken-variant-constructs"])
def test_a_publisher_failing_in_init_is_one_line_at_serve_and_a_problem_in_doctor(
    cli: InProcessCli, sqlite_runner: ServiceRunner, tmp_path: Path, fails: bool
) -> None:
    module = f"init_fails_{tmp_path.name.replace('-', '_')}"  # unique: sys.modules caches it
    (tmp_path / f"{module}.py").write_text(FAILS_IN_INIT)
    sqlite_runner.declare({"orders": f"{module}:{'Failing' if fails else 'Fine'}"})
    migrate.upgrade_all(sqlite_runner.settings())
    reason = "publisher 'orders': Failing(...) failed: RuntimeError: no credentials for the broker"
    checks = {c["name"]: c for c in json.loads(cli("doctor", "--json").stdout)["checks"]}
    if not fails:  # the same check passes a class that constructs
        assert checks["publishers"]["ok"], checks["publishers"]
        assert checks["publishers"]["detail"].endswith("constructed")
        return
    assert checks["publishers"]["ok"] is False
    assert checks["publishers"]["detail"] == reason
    served = cli("serve")
    assert served.returncode != 0
    assert [line for line in served.stderr.splitlines() if line.strip()] == [f"error: {reason}"]
    assert "Traceback" not in served.stderr + served.stdout


def test_doctor_and_status_name_a_chunk_hung_in_a_live_worker(
    cli: InProcessCli, sqlite_runner: ServiceRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A publisher hung inside its chunk keeps the chunk PENDING under a live worker, whose
    transaction Postgres may already have ended: doctor and status name the chunk and its
    worker, and status is no longer healthy."""
    sqlite_runner.start("chunk.before_commit=hang@1")
    checks = {c["name"]: c for c in json.loads(cli("doctor", "--json").stdout)["checks"]}
    assert checks["chunks running long"]["ok"], checks["chunks running long"]
    sqlite_runner.publish("orders", 30, "hung")
    sqlite_runner.wait_for_event("failpoint_fired")
    monkeypatch.setattr(work, "LONG_CHUNK_SEC", 1.0)  # 30 s in a deployment
    time.sleep(1.5)
    checks = {c["name"]: c for c in json.loads(cli("doctor", "--json").stdout)["checks"]}
    found = checks["chunks running long"]
    assert found["ok"] is False
    assert found["detail"].startswith(
        "1 running longer than 1 s: batch-hung/chunk-00000 on worker "
    )
