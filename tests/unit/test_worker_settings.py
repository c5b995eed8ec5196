"""Worker settings: the executor id and the lease timing, from publishers.toml and the
environment, each refused with one line naming what is wrong."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dbos_publishers import _connections as connections
from dbos_publishers._config import DEFAULT_CONNECTIONS, ConfigError, LeaseSettings, Settings
from dbos_publishers._declarations import CHUNK_PREFETCH
from dbos_publishers._runtime import dbos_config, validate
from dbos_publishers.fleet._workers import default_executor_id, process_token

BASE = '[[publishers]]\nname = "orders"\n'


def settings(tmp_path: Path, toml: str = "", **env: str) -> Settings:
    path = tmp_path / "publishers.toml"
    path.write_text(toml + BASE)
    return Settings.from_env({"APP_PUBLISHERS_FILE": str(path), **env})


def test_defaults_are_a_two_second_heartbeat_and_a_ten_second_lease(tmp_path: Path) -> None:
    loaded = settings(tmp_path)
    assert loaded.leases == LeaseSettings(heartbeat_sec=2.0, ttl_sec=10.0)
    assert loaded.executor_id is None


def test_the_file_sets_the_lease_and_the_environment_overrides_it(tmp_path: Path) -> None:
    toml = "[workers]\nheartbeat_sec = 1\nlease_ttl_sec = 4.5\n"
    assert settings(tmp_path, toml).leases == LeaseSettings(1.0, 4.5)
    overridden = settings(tmp_path, toml, APP_LEASE_TTL_SEC="8", APP_HEARTBEAT_SEC="0.5")
    assert overridden.leases == LeaseSettings(0.5, 8.0)


@pytest.mark.parametrize(
    ("toml", "env", "fragment"),
    [
        ("[workers]\nheartbeat_sec = 5\nlease_ttl_sec = 6\n", {}, "at least twice heartbeat"),
        ("[workers]\nheartbeat_sec = 0\n", {}, "heartbeat_sec (APP_HEARTBEAT_SEC) must be"),
        ("[workers]\nlease_ttl_sec = true\n", {}, "lease_ttl_sec (APP_LEASE_TTL_SEC) must be"),
        ("[workers]\nttl = 3\n", {}, "[workers]: unknown key(s) ttl"),
        ("", {"APP_LEASE_TTL_SEC": " 10"}, "not ' 10'"),
        ("", {"APP_HEARTBEAT_SEC": "nan"}, "not 'nan'"),
        ("", {"APP_EXECUTOR_ID": "has space"}, "APP_EXECUTOR_ID 'has space' is invalid"),
        ("", {"APP_EXECUTOR_ID": "x" * 129}, "is invalid"),
        ("[workers]\nconnections = 0\n", {}, "connections (APP_CONNECTIONS) must be"),
        ("[workers]\nconnections = 2.5\n", {}, "not 2.5"),
        ("", {"APP_CONNECTIONS": " 24"}, "not ' 24'"),
        ("", {"APP_CONNECTIONS": "1001"}, "[1, 1000]"),
    ],
)
def test_bad_worker_settings_are_refused_with_one_line(
    tmp_path: Path, toml: str, env: dict[str, str], fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(tmp_path, toml, **env)
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_executor_id_reaches_dbos_and_is_unique_per_process(tmp_path: Path) -> None:
    chosen = settings(tmp_path, APP_EXECUTOR_ID="replica-2")
    assert chosen.executor_id == "replica-2"
    assert dbos_config(validate(chosen), "replica-2")["executor_id"] == "replica-2"
    assert default_executor_id().endswith(f"-{os.getpid()}")


def test_a_process_token_tells_a_running_process_from_a_reused_pid() -> None:
    mine = process_token(os.getpid())
    assert mine is not None and mine == process_token(os.getpid())
    assert process_token(1) != mine
    assert process_token(2**22 + 1) is None  # above pid_max: not running


def test_the_connection_budget_is_shared_within_its_bound(tmp_path: Path) -> None:
    default = connections.plan(settings(tmp_path))
    assert default.budget == DEFAULT_CONNECTIONS
    assert default.total <= DEFAULT_CONNECTIONS
    assert default.datasource == 8 + 1  # one per chunk running at once (default 8), plus one
    bigger = connections.plan(settings(tmp_path, APP_CONNECTIONS="200"))
    # No more than DBOS can use: a connection per chunk workflow it runs at once (two per chunk
    # transaction slot), per batch workflow, and the spare.
    assert bigger.system == 8 * CHUNK_PREFETCH + 4 + connections.SYSTEM_SPARE
    overrides = settings(tmp_path, "[workers]\nconnections = 30\n", APP_CONNECTIONS="40")
    assert overrides.connections == 40


def test_a_budget_too_small_for_the_chunk_concurrency_is_refused_before_anything_runs(
    tmp_path: Path,
) -> None:
    toml = "[queues]\nchunk_concurrency = 16\n"
    with pytest.raises(ConfigError) as caught:
        validate(settings(tmp_path, toml))
    message = str(caught.value)
    assert "connections = 24 is too few for chunk_concurrency 16" in message
    assert "at least 28" in message and "\n" not in message
    assert validate(settings(tmp_path, toml, APP_CONNECTIONS="28")).connections.total <= 28
