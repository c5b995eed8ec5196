"""Bad input to the CLI: one line on stderr, exit 2, nothing written, no password shown.

The CLI's `main` runs in this process (a subprocess per case cost a second of interpreter
start-up each); two smoke tests run the real `python -m app` to show the process exits the same
way."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers import _migrate as migrate
from dbos_publishers._declarations import MAX_PUBLISHERS_FILE_BYTES
from lab.scenarios.harness import json_records
from tests.helpers import ROOT, CliRun, InProcessCli, ServiceRunner

UNREACHABLE = "postgresql://alice:s3cret-pw@127.0.0.1:1/nowhere_db"


def _refused(done: CliRun, *fragments: str, serve: bool = False) -> None:
    """Exit 2 and exactly one line on stderr naming the problem; stdout carries no data."""
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    for fragment in fragments:
        assert fragment in done.stderr
    if serve:  # the service's output is its log: JSON records only, never the error itself
        lines = done.stdout.splitlines()
        assert len(json_records(done.stdout)) == len(lines), done.stdout
    else:
        assert done.stdout == ""


def _nothing_written(tmp_path: Path) -> None:
    assert not (tmp_path / "system.sqlite").exists()
    assert not (tmp_path / "app.sqlite").exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["publish", "nobody", "--count", "5"], "unknown publisher 'nobody'"),
        (["publish", "orders", "--count", "0"], "count must be between 1"),
        (["publish", "orders", "--count", "-3"], "not -3"),
        (["publish", "orders", "--count", "ten"], "invalid int value: 'ten'"),
        (["publish", "orders"], "--count"),
        (["publish", "orders", "--count", "5", "--topic", "Has Space"], "topic 'Has Space'"),
        (["publish", "orders", "--count", "5", "--batch-id", "a/b"], "batch id 'a/b'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_publish_input_is_refused_and_writes_nothing(
    cli: InProcessCli, tmp_path: Path, args: list[str], fragment: str
) -> None:
    _refused(cli(*args), fragment)
    _nothing_written(tmp_path)


UNREACHABLE_CASES = [
    (["publish", "orders", "--count", "5"], "DBOS_SYSTEM_DATABASE_URL"),
    (["status"], "DBOS_SYSTEM_DATABASE_URL"),
    (["serve"], "DBOS_SYSTEM_DATABASE_URL"),
    (["inspect", "b"], "DBOS_SYSTEM_DATABASE_URL"),
    (["upgrade"], "DBOS_SYSTEM_DATABASE_URL"),
    (["upgrade"], "APP_DATABASE_URL"),
    # publish and inspect never open the application database
    (["status"], "APP_DATABASE_URL"),
    (["serve"], "APP_DATABASE_URL"),
]


def _case_id(case: object) -> str:
    return case[0] if isinstance(case, list) else str(case)


@pytest.mark.parametrize(("command", "variable"), UNREACHABLE_CASES, ids=_case_id)
def test_unreachable_database_names_host_and_database_but_never_the_password(
    cli: InProcessCli, command: list[str], variable: str
) -> None:
    done = cli(*command, **{variable: UNREACHABLE})
    _refused(done, "nowhere_db", "127.0.0.1:1", variable, serve=command == ["serve"])
    assert "s3cret-pw" not in done.stdout + done.stderr


@pytest.mark.parametrize(("command", "variable"), UNREACHABLE_CASES, ids=_case_id)
def test_an_unreachable_database_leaves_the_other_untouched(
    cli: InProcessCli, tmp_path: Path, command: list[str], variable: str
) -> None:
    assert cli(*command, **{variable: UNREACHABLE}).returncode == 2
    _nothing_written(tmp_path)


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"APP_FAILPOINTS": "no.such.point=crash"}, "unknown failpoint 'no.such.point'"),
        ({"APP_FAILPOINTS": "chunk.start=explode"}, "cannot parse 'chunk.start=explode'"),
        ({"APP_FAILPOINTS": "chunk.start=crash@0"}, "the hit number starts at 1"),
        ({"DBOS_SYSTEM_DATABASE_URL": "mysql://x@h/db"}, "unsupported scheme 'mysql'"),
        ({"APP_DATABASE_URL": "postgresql://u:pw@h"}, "must name a database"),
        ({"APP_LOG_FORMAT": "xml"}, "APP_LOG_FORMAT"),
        ({"APP_PUBLISHERS_FILE": "/nonexistent.toml"}, "does not exist"),
    ],
)
def test_bad_configuration_stops_the_service_before_it_starts(
    cli: InProcessCli, tmp_path: Path, env: dict[str, str], fragment: str
) -> None:
    _refused(cli("serve", **env), fragment, serve=True)
    _nothing_written(tmp_path)


@pytest.mark.parametrize(
    ("toml", "fragment"),
    [
        ('[[publishers]]\nname = "a"\n[[publishers]]\nname = "a"\n', "'a' is declared twice"),
        ('[[publishers]]\nname = "Bad Name"\n', "publisher name 'Bad Name' is invalid"),
        ('[[publishers]]\nname = "a"\nclass = "app.nothing:Nope"\n', "cannot import"),
        (
            '[[publishers]]\nname = "a"\nclass = "dbos_publishers._config:Settings"\n',
            "not a Publisher",
        ),
    ],
)
def test_invalid_publisher_declarations_are_refused_at_start(
    cli: InProcessCli, tmp_path: Path, toml: str, fragment: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    _refused(cli("serve", APP_PUBLISHERS_FILE=str(path)), fragment, serve=True)
    _nothing_written(tmp_path)


def _binary(path: Path) -> Path:
    path.write_bytes(bytes(range(256)))
    return path


def _huge(path: Path) -> Path:
    """Valid TOML all the way, one byte over the limit: only its size is wrong."""
    head = b'[[publishers]]\nname = "orders"\n'
    path.write_bytes(head + b"#" * (MAX_PUBLISHERS_FILE_BYTES - len(head)) + b"\n")
    return path


PUBLISHERS_FILES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "a directory": (lambda tmp: tmp, "is a directory"),
    "binary": (lambda tmp: _binary(tmp / "bytes.toml"), "is not UTF-8 text (byte 0x80"),
    "over 1 MiB": (lambda tmp: _huge(tmp / "huge.toml"), "is over the 1 MiB"),
    "endless": (lambda _tmp: Path("/dev/zero"), "is not a regular file"),
}
PUBLISHERS_FILE_COMMANDS = [["serve"], ["status"], ["publish", "orders", "--count", "5"]]


@pytest.mark.parametrize("command", PUBLISHERS_FILE_COMMANDS, ids=" ".join)
@pytest.mark.parametrize("kind", PUBLISHERS_FILES)
def test_a_publishers_file_that_is_no_text_file_is_one_line_and_exit_2(
    cli: InProcessCli, tmp_path: Path, kind: str, command: list[str]
) -> None:
    make, fragment = PUBLISHERS_FILES[kind]
    path = make(tmp_path)
    done = cli(*command, APP_PUBLISHERS_FILE=str(path))
    _refused(
        done, fragment, f"publishers file {path} (APP_PUBLISHERS_FILE)", serve=command == ["serve"]
    )
    _nothing_written(tmp_path)


def _unprivileged() -> list[str]:
    """A command prefix under which file permissions hold: as root, the real process runs
    without the capabilities that override them, as in a container started with
    `--cap-drop DAC_OVERRIDE --cap-drop DAC_READ_SEARCH` (root ignores chmod otherwise)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "running as root, the test needs setpriv (util-linux)"
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "command", [["serve"], ["publish", "orders", "--count", "5"]], ids=" ".join
)
def test_an_unreadable_publishers_file_is_one_line_and_exit_2(
    sqlite_runner: ServiceRunner, tmp_path: Path, command: list[str]
) -> None:
    path = sqlite_runner.declare(name="locked.toml")
    path.chmod(0)
    done = subprocess.run(
        [*_unprivileged(), sys.executable, "-m", "app", *command],
        cwd=tmp_path,
        env=sqlite_runner.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    refused = CliRun(done.returncode, done.stdout, done.stderr)
    _refused(
        refused,
        f"publishers file {path} (APP_PUBLISHERS_FILE) cannot be read (permission denied)",
        serve=command == ["serve"],
    )
    _nothing_written(tmp_path)


def test_an_open_api_without_a_token_stops_the_service_before_it_starts(
    cli: InProcessCli, tmp_path: Path
) -> None:
    done = cli("serve", APP_HTTP_HOST="0.0.0.0", APP_HTTP_PORT="18111")  # noqa: S104 - on purpose
    _refused(done, "APP_HTTP_HOST=0.0.0.0 serves the API beyond loopback", serve=True)
    _nothing_written(tmp_path)


def test_help_lists_the_commands(cli: InProcessCli) -> None:
    done = cli("--help")
    assert (done.returncode, done.stderr) == (0, "")
    for command in ("serve", "publish", "status", "inspect", "upgrade"):
        assert command in done.stdout
    assert "scenario" not in done.stdout.split("\n\n")[0]  # the lab is not the framework's
    lab = cli("scenario", "--help")  # `python -m lab`, outside the wheel
    assert lab.returncode == 0
    assert "scenario" in lab.stdout


def test_the_old_lab_commands_name_the_new_one() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "scenario",
            "run",
            "x",
            "--postgres-url",
            "postgresql://u:pw9@h/d",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "error: the crash lab moved: run `python -m lab scenario` with the same arguments\n"
    )  # never the arguments: a URL may carry a password


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["scenario", "run"], "give one scenario NAME or --all"),
        (["scenario", "run", "chaos", "--all"], "give one scenario NAME or --all"),
        (["scenario", "run", "nope"], "unknown scenario 'nope'"),
        (["scenario", "run", "chaos", "--messages", "0"], "--messages must be a positive"),
        (["scenario", "run", "chaos", "--seed", "x"], "--seed must be a whole number"),
        (["scenario", "run", "chaos", "--kills", "-2"], "--kills must be a positive"),
        (["scenario", "run", "chaos", "--backend", "mysql"], "invalid choice: 'mysql'"),
        (
            [
                "scenario",
                "run",
                "chaos",
                "--backend",
                "postgres",
                "--postgres-url",
                "postgresql://lab:s3cret@127.0.0.1:1/postgres",
            ],
            "127.0.0.1:1",
        ),
    ],
)
def test_bad_scenario_input_is_refused_in_one_line(
    cli: InProcessCli, args: list[str], fragment: str
) -> None:
    done = cli(*args)
    _refused(done, fragment)
    assert "s3cret" not in done.stdout + done.stderr


# ---- the real interpreter ---------------------------------------------------------------------


@pytest.mark.slow
def test_the_real_process_refuses_bad_input_in_one_line(
    sqlite_runner: ServiceRunner, tmp_path: Path
) -> None:
    done = sqlite_runner.cli("publish", "nobody", "--count", "5")
    _refused(CliRun(done.returncode, done.stdout, done.stderr), "unknown publisher 'nobody'")
    _nothing_written(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("variable", ["DBOS_SYSTEM_DATABASE_URL", "APP_DATABASE_URL"])
def test_the_real_service_process_names_an_unreachable_database_in_one_line(
    sqlite_runner: ServiceRunner, tmp_path: Path, variable: str
) -> None:
    """A database down at start: exit 2 and one line, no traceback, no hang (a closed port)."""
    done = sqlite_runner.cli("serve", **{variable: UNREACHABLE})
    refused = CliRun(done.returncode, done.stdout, done.stderr)
    _refused(refused, "nowhere_db", "127.0.0.1:1", variable, serve=True)
    assert "s3cret-pw" not in done.stdout + done.stderr
    _nothing_written(tmp_path)


def test_waiting_on_a_batch_that_ended_without_a_summary_is_one_line_and_exit_1(
    cli: InProcessCli, sqlite_runner: ServiceRunner
) -> None:
    """A cancelled batch (as an operator's `dbos workflow cancel` leaves it): no traceback."""
    submitted = cli("publish", "orders", "--count", "5", "--batch-id", "gone")
    assert submitted.returncode == 0, submitted.stderr
    with dbos_gateway.client(sqlite_runner.settings().system_db) as client:
        client.cancel_workflow("batch-gone")
    done = cli("publish", "orders", "--count", "5", "--batch-id", "gone", "--wait")
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if not line.startswith("{")]  # logs: JSON
    assert errors == [
        "batch gone queued (workflow batch-gone)",  # the id, before any wait
        "error: workflow batch-gone ended CANCELLED: DBOS Error 13: Awaited workflow batch-gone "
        "was cancelled",
    ]
    assert done.stdout == ""


def test_status_shows_dead_work_and_is_not_healthy_while_it_lasts(
    cli: InProcessCli, sqlite_runner: ServiceRunner
) -> None:
    assert cli("publish", "orders", "--count", "5", "--batch-id", "doomed").returncode == 0
    migrate.upgrade_all(sqlite_runner.settings())  # as `dbos migrate` does
    before = json.loads(cli("status", "--json").stdout)
    assert before["dead"] == {} and before["healthy"] is True  # pending is not dead
    with dbos_gateway.client(sqlite_runner.settings().system_db) as client:
        client.cancel_workflow("batch-doomed")
    after = cli("status", "--json")
    snapshot = json.loads(after.stdout)
    assert snapshot["dead"] == {"publish_batch": {"CANCELLED": 1}}
    assert snapshot["consistent"] is True and snapshot["healthy"] is False
    shown = cli("status").stdout
    assert "DEAD publish_batch" in shown
    assert "dbos-publishers retry BATCH_ID" in shown  # the product's command, not DBOS's
