"""Bad input to the CLI: one line on stderr, exit 2, nothing written, no password shown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import Databases, ServiceRunner


@pytest.fixture
def runner(tmp_path: Path) -> ServiceRunner:
    databases = Databases(
        backend="sqlite",
        system_url=f"sqlite:///{tmp_path / 'system.sqlite'}",
        app_url=f"sqlite:///{tmp_path / 'app.sqlite'}",
    )
    runner = ServiceRunner(databases=databases, workdir=tmp_path)
    runner.declare()
    return runner


def _refused(done: subprocess.CompletedProcess[str], *fragments: str, logs: bool = False) -> None:
    assert done.returncode == 2, done.stderr
    assert logs or done.stdout == ""  # `serve` logs to stdout before it meets a database
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for fragment in fragments:
        assert fragment in lines[0]


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
    runner: ServiceRunner, tmp_path: Path, args: list[str], fragment: str
) -> None:
    _refused(runner.cli(*args), fragment)
    assert not (tmp_path / "system.sqlite").exists()
    assert not (tmp_path / "app.sqlite").exists()


@pytest.mark.parametrize(
    "command", [["publish", "orders", "--count", "5"], ["status"], ["serve"], ["inspect", "b"]]
)
@pytest.mark.parametrize("variable", ["DBOS_SYSTEM_DATABASE_URL", "APP_DATABASE_URL"])
def test_unreachable_database_names_host_and_database_but_never_the_password(
    runner: ServiceRunner, command: list[str], variable: str
) -> None:
    url = "postgresql://alice:s3cret-pw@127.0.0.1:1/nowhere_db"
    done = runner.cli(*command, **{variable: url})
    if command[0] in ("publish", "inspect") and variable == "APP_DATABASE_URL":
        return  # these only talk to the system database, which is fine here
    _refused(done, "nowhere_db", "127.0.0.1:1", variable, logs=command[0] == "serve")
    assert "s3cret-pw" not in done.stderr


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
    runner: ServiceRunner, tmp_path: Path, env: dict[str, str], fragment: str
) -> None:
    _refused(runner.cli("serve", **env), fragment)
    assert not (tmp_path / "system.sqlite").exists()


@pytest.mark.parametrize(
    ("toml", "fragment"),
    [
        ('[[publishers]]\nname = "a"\n[[publishers]]\nname = "a"\n', "'a' is declared twice"),
        ('[[publishers]]\nname = "Bad Name"\n', "publisher name 'Bad Name' is invalid"),
        ('[[publishers]]\nname = "a"\nclass = "app.nothing:Nope"\n', "cannot import"),
        ('[[publishers]]\nname = "a"\nclass = "app.config:Settings"\n', "not a Publisher"),
    ],
)
def test_invalid_publisher_declarations_are_refused_at_start(
    runner: ServiceRunner, tmp_path: Path, toml: str, fragment: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    _refused(runner.cli("serve", APP_PUBLISHERS_FILE=str(path)), fragment)
    assert not (tmp_path / "system.sqlite").exists()


def test_help_lists_the_three_commands() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    for command in ("serve", "publish", "status"):
        assert command in done.stdout


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
    runner: ServiceRunner, args: list[str], fragment: str
) -> None:
    done = runner.cli(*args)
    _refused(done, fragment)
    assert "s3cret" not in done.stderr
