"""The wheel is the framework and runs a service of a user's own: built with `pip wheel`,
installed alone into a fresh venv outside the repository, in a folder holding only the user's
publisher module, a publishers file and dbos-config.yaml, `dbos start` serves, a 1,000-message
batch publishes exactly, and `doctor` passes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.scenarios.harness import descendants
from tests.helpers import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

MESSAGES = 1000
NOT_SOURCES = (".git", ".venv", "build", "*.egg-info", "__pycache__", "*_cache", "site", "*.sqlite")
PUBLISHER_MODULE = '''
from dbos_publishers import ChunkSpec, Publisher


class Greetings(Publisher):
    """A user's own publisher: one greeting per message."""

    def body(self, chunk: ChunkSpec, position: int) -> str:
        return f"hello #{position} on {chunk['topic']}"
'''
PUBLISHERS_FILE = """
[queues]
polling_interval_sec = 0.05

[[publishers]]
name = "greetings"
class = "greetings:Greetings"
chunk_size = 100
"""
DBOS_CONFIG = """
name: my-service
language: python
system_database_url: ${DBOS_SYSTEM_DATABASE_URL}
runtimeConfig:
  start:
    - python -m dbos_publishers serve
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy of the sources: two test workers building in the repository at once
    would share its build/ and egg-info folders."""
    source = tmp_path_factory.mktemp("source") / "dbos-publishers"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCES))
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(source)],
        env=_outside_the_repository(),
        check=True,
        capture_output=True,
        timeout=600,
    )
    (built,) = dist.glob("dbos_publishers-*.whl")
    return built


@pytest.fixture(scope="module")
def venv_bin(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv outside the repository with only the wheel (and what it depends on)."""
    venv = tmp_path_factory.mktemp("venv")
    outside = _outside_the_repository()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], env=outside, check=True, timeout=300)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(wheel)],
        env=outside,
        check=True,
        capture_output=True,
        timeout=600,
    )
    return venv / "bin"


def test_the_wheel_holds_the_framework_its_types_and_migrations_and_no_lab(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "dbos_publishers/py.typed" in names
    assert "dbos_publishers/migrations/env.py" in names
    revisions = [n for n in names if n.startswith("dbos_publishers/migrations/versions/")]
    assert len(revisions) >= 6
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"dbos_publishers"}  # no lab, no app, no tests


@pytest.fixture
def service_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "my-service"
    folder.mkdir()
    (folder / "greetings.py").write_text(PUBLISHER_MODULE)
    (folder / "publishers.toml").write_text(PUBLISHERS_FILE)
    (folder / "dbos-config.yaml").write_text(DBOS_CONFIG)
    return folder


def _outside_the_repository() -> dict[str, str]:
    """This process's environment without what points into the repository or configures it (the
    test suite puts the repository on PYTHONPATH, where pip would find the project installed)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "DBOS_", "PYTHON"))}


def _env(venv_bin: Path, folder: Path) -> dict[str, str]:
    env = _outside_the_repository()
    return {
        **env,
        "PATH": f"{venv_bin}:{env.get('PATH', '')}",
        "DBOS_SYSTEM_DATABASE_URL": f"sqlite:///{folder / 'system.sqlite'}",
        "APP_DATABASE_URL": f"sqlite:///{folder / 'app.sqlite'}",
        "APP_HTTP_PORT": "off",
        "APP_LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def started(venv_bin: Path, service_folder: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`dbos start` in the user's folder; its whole session stopped afterwards."""
    log = (service_folder / "service.log").open("wb")
    process = subprocess.Popen(
        [str(venv_bin / "dbos"), "start"],
        cwd=service_folder,
        env=_env(venv_bin, service_folder),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        _stop_session(process)
        log.close()


def _stop_session(process: subprocess.Popen[bytes]) -> None:
    """`dbos start` runs the service through a shell in a session of its own: stop every process
    it started, and itself, whatever happened."""
    for pid in [*descendants(process.pid), process.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(timeout=30)


def _cli(venv_bin: Path, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv_bin / "dbos-publishers"), *args],
        cwd=folder,
        env=_env(venv_bin, folder),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_service_of_a_users_own_runs_from_the_wheel_alone(
    venv_bin: Path, service_folder: Path, started: subprocess.Popen[bytes]
) -> None:
    # The installed package, not this repository's: the venv sees no source tree.
    where = _cli(venv_bin, service_folder, "--version")
    assert where.returncode == 0, where.stderr
    done = _cli(
        venv_bin, service_folder, "publish", "greetings", "--count", str(MESSAGES),
        "--batch-id", "first", "--wait", "--timeout", "240",
    )  # fmt: skip
    log = (service_folder / "service.log").read_text(errors="replace")
    assert done.returncode == 0, done.stderr + log[-3000:]
    summary = json.loads(done.stdout)
    assert (summary["published"], summary["failed"]) == (MESSAGES, 0), summary

    status = _cli(venv_bin, service_folder, "status", "--json")
    assert status.returncode == 0, status.stderr
    state = json.loads(status.stdout)
    assert state["consistent"] is True, state["violations"]
    assert state["ledger_rows"] == MESSAGES
    doctor = _cli(venv_bin, service_folder, "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert started.poll() is None  # the service is still serving
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (service_folder / "app.sqlite").exists():
        time.sleep(0.1)
    assert (service_folder / "app.sqlite").exists()  # its databases are the folder's own
