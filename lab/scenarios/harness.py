"""The real service in a subprocess (the command `dbos start` runs), the real CLI, SIGKILL of
both, and reads of the two databases: what scenarios and the test suite drive."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dbos import WorkflowStatus

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers import _lifecycle as lifecycle
from dbos_publishers._config import DatabaseUrl, Settings
from dbos_publishers._errors import AppError
from dbos_publishers._ids import batch_workflow_id
from dbos_publishers.store import _invariants as invariants
from dbos_publishers.store import _ledger as ledger
from dbos_publishers.store._database import read_snapshot, short_lived_engine
from lab import COMMANDS
from lab.paths import REPO_ROOT
from lab.scenarios.reaping import child_of_this_run

ScenarioBackend = Literal["sqlite", "postgres"]
START_TIMEOUT_SEC = 90
EXIT_TIMEOUT_SEC = 180
EVENT_PUBLISHER = "dbos_publishers.contrib.events:EventPublisher"
VENV_BIN = Path(sys.executable).parent
SERVE = [sys.executable, "-m", "app", "serve"]
StepKey = tuple[str, int]


class HarnessError(AppError):
    """The service or the CLI did not do what the harness waited for; the message says what."""


@dataclass(frozen=True)
class Databases:
    backend: ScenarioBackend
    system_url: str
    app_url: str


def descendants(pid: int) -> list[int]:
    """Every process started (transitively) by pid, read from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def json_records(text: str) -> list[dict[str, Any]]:
    """The JSON log records among a process's output lines."""
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
    return out


def publishers_toml(
    publishers: dict[str, str],
    *,
    chunk_size: int,
    chunk_concurrency: int,
    options: dict[str, dict[str, str]] | None = None,
) -> str:
    """A publishers file: name -> class path, shared tuning, per-publisher options."""
    parts = [
        f"[defaults]\nchunk_size = {chunk_size}\n",
        f"[queues]\nchunk_concurrency = {chunk_concurrency}\npolling_interval_sec = 0.1\n",
    ]
    for name, class_path in publishers.items():
        parts.append(f'[[publishers]]\nname = "{name}"\nclass = "{class_path}"\n')
        extra = (options or {}).get(name)
        if extra:
            parts.append("[publishers.options]\n")
            parts += [f"{key} = {json.dumps(value)}\n" for key, value in extra.items()]
    return "\n".join(parts)


def with_repo_on_path(env: Mapping[str, str]) -> str:
    """PYTHONPATH with this repository first, for processes that run from another folder."""
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(REPO_ROOT)]
    return os.pathsep.join([str(REPO_ROOT), *rest])


@dataclass
class ServiceHarness:
    databases: Databases
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    log_paths: list[Path] = field(default_factory=list)
    started_at: list[float] = field(default_factory=list)  # wall clock of each start
    publishers_file: Path | None = None
    http_port: int | None = None  # None: the service runs without its HTTP API
    extra_env: dict[str, str] = field(default_factory=dict)
    serve_args: tuple[str, ...] = ()  # python arguments instead of `-m app serve` (lab variants)
    command_prefix: tuple[str, ...] = ()  # e.g. `ip netns exec NS`: the service runs under it

    def enable_http(self) -> str:
        """Give the service a free loopback port for its HTTP API; returns the base URL."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.http_port = probe.getsockname()[1]
        return f"http://127.0.0.1:{self.http_port}"

    def declare(
        self,
        publishers: dict[str, str] | None = None,
        *,
        chunk_size: int = 50,
        chunk_concurrency: int = 4,
        options: dict[str, dict[str, str]] | None = None,
        name: str = "publishers.toml",
    ) -> Path:
        """Write a publishers file (name -> class path) and use it from now on."""
        text = publishers_toml(
            publishers or {"orders": EVENT_PUBLISHER},
            chunk_size=chunk_size,
            chunk_concurrency=chunk_concurrency,
            options=options,
        )
        self.publishers_file = self.workdir / name
        self.publishers_file.write_text(text)
        return self.publishers_file

    def env(self, **extra: str) -> dict[str, str]:
        if self.publishers_file is None:
            self.declare()
        env = {
            **os.environ,
            "DBOS_SYSTEM_DATABASE_URL": self.databases.system_url,
            "APP_DATABASE_URL": self.databases.app_url,
            "APP_PUBLISHERS_FILE": str(self.publishers_file),
            "APP_LOG_FORMAT": "json",
            "APP_FAILPOINTS": "",
            "APP_HTTP_PORT": str(self.http_port) if self.http_port else "off",
            # The reference service (`app`) and the lab live in this repository, not the wheel.
            "PYTHONPATH": with_repo_on_path(os.environ),
            **self.extra_env,
        }
        env.update(extra)
        return env

    def settings(self) -> Settings:
        return Settings.from_env(self.env())

    @property
    def app_db(self) -> DatabaseUrl:
        # Straight from the URL: the lab polls it, and Settings would re-read the publishers file.
        return DatabaseUrl.parse(self.databases.app_url, "app")

    @property
    def system_db(self) -> DatabaseUrl:
        return DatabaseUrl.parse(self.databases.system_url, "system")

    # ---- the service process --------------------------------------------------------------

    def start(
        self,
        failpoints: str = "",
        *,
        wait_ready: bool = True,
        via_dbos_start: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        """Start `python -m app serve`, or `dbos start` from the project root (which runs it)."""
        self.starts += 1
        log_path = self.workdir / f"serve-{self.starts}.log"
        self.log_paths.append(log_path)
        serve = [sys.executable, *self.serve_args] if self.serve_args else SERVE
        command = [str(VENV_BIN / "dbos"), "start"] if via_dbos_start else serve
        command = [*self.command_prefix, *command]
        full_env = self.env(APP_FAILPOINTS=failpoints, **(env or {}))
        full_env["PATH"] = f"{VENV_BIN}:{full_env.get('PATH', '')}"  # `python` in dbos-config
        self.started_at.append(time.time())
        with log_path.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                cwd=REPO_ROOT if via_dbos_start else self.workdir,
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=child_of_this_run,  # noqa: PLW1509 - a signal() and a prctl, resolved beforehand
            )
        if wait_ready:
            self.wait_for_event("service_ready")

    def wait_for_event(self, event: str, timeout: float = START_TIMEOUT_SEC) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(r.get("event") == event for r in self.records()):
                return
            if not self.running():
                code = self.process.returncode if self.process else None
                raise HarnessError(f"service exited ({code}) before {event}:\n{self.tail()}")
            time.sleep(0.05)
        raise HarnessError(f"service never logged {event}:\n{self.tail()}")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_exit(self, timeout: float = EXIT_TIMEOUT_SEC) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> int:
        """SIGTERM, as `dbos start` forwards it; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def kill(self) -> None:
        """SIGKILL the service and everything it started (`dbos start` runs it in a child)."""
        if self.process is not None and self.process.poll() is None:
            for pid in [*descendants(self.process.pid), self.process.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def records(self, start: int | None = None) -> list[dict[str, Any]]:
        """JSON log records of one start (default: the latest)."""
        path = self.log_paths[(start or self.starts) - 1]
        return json_records(path.read_text(errors="replace"))

    def all_records(self) -> list[dict[str, Any]]:
        return [r for start in range(1, self.starts + 1) for r in self.records(start)]

    def unreachable_reason(self) -> str | None:
        """The service's own one-line error, when its last start failed on an unreachable
        database ("error: cannot reach ..." / "error: cannot migrate ...")."""
        for line in reversed(self.tail().splitlines()):
            if line.startswith("error: cannot "):
                return line.removeprefix("error: ")
        return None

    def executor_id(self) -> str | None:
        """The executor id the latest start announced (None before it was ready)."""
        for record in self.records():
            if record.get("event") == "service_ready":
                return str(record.get("executor_id"))
        return None

    def tail(self, lines: int = 40) -> str:
        if not self.log_paths:
            return ""
        return "\n".join(self.log_paths[-1].read_text(errors="replace").splitlines()[-lines:])

    # ---- the CLI --------------------------------------------------------------------------

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """The reference service's CLI (`python -m app`), or the lab's for its own commands."""
        program = "lab" if args[:1] and args[0] in COMMANDS else "app"
        return subprocess.run(
            [sys.executable, "-m", program, *args],
            cwd=self.workdir,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=EXIT_TIMEOUT_SEC,
            check=False,
            preexec_fn=child_of_this_run,  # a lab run dies with its test; Ctrl-C reaches it
        )

    def publish(self, publisher: str, count: int, batch_id: str, *extra: str, **env: str) -> None:
        done = self.cli(
            "publish", publisher, "--count", str(count), "--batch-id", batch_id, *extra, **env
        )
        if done.returncode != 0:
            raise HarnessError(f"publish {batch_id} exited {done.returncode}: {done.stderr}")

    # ---- reading state --------------------------------------------------------------------

    def workflow_statuses(self, workflow_ids: list[str]) -> list[WorkflowStatus]:
        with dbos_gateway.client(self.system_db) as client:
            return dbos_gateway.workflows(client, workflow_ids)

    def wait_batch(self, batch_id: str, timeout: float = EXIT_TIMEOUT_SEC) -> dict[str, Any]:
        """Wait for a batch workflow to succeed and return its summary."""
        with dbos_gateway.client(self.system_db) as client:
            final = dbos_gateway.wait_until_terminal(
                client, batch_workflow_id(batch_id), timeout_sec=timeout
            )
        if final is None:
            raise HarnessError(f"batch {batch_id} did not finish in {timeout}s:\n{self.tail()}")
        if final.status != "SUCCESS":
            raise HarnessError(f"batch {batch_id} ended {final.status}:\n{self.tail()}")
        summary: dict[str, Any] = final.output or {}
        return summary

    def workflows(self, *batch_ids: str) -> list[WorkflowStatus]:
        """The batch workflows and their chunk workflows."""
        with dbos_gateway.client(self.system_db) as client:
            return [
                wf
                for batch_id in batch_ids
                for wf in dbos_gateway.workflow_family(client, batch_workflow_id(batch_id))
            ]

    def steps(self, *batch_ids: str) -> dict[StepKey, dict[str, Any]]:
        """Every recorded step of the batches' workflows, keyed by (workflow id, step id)."""
        workflows = self.workflows(*batch_ids)
        with dbos_gateway.client(self.system_db) as client:
            return {
                (wf.workflow_id, step["function_id"]): dict(step)
                for wf in workflows
                for step in dbos_gateway.steps(client, wf.workflow_id)
            }

    def active_workflow_statuses(self) -> list[WorkflowStatus]:
        with dbos_gateway.client(self.system_db) as client:
            return dbos_gateway.active_workflows(client)

    def active_workflows(self) -> list[str]:
        return [wf.workflow_id for wf in self.active_workflow_statuses()]

    def batch_outcome(self, batch_id: str) -> tuple[str | None, dict[str, Any] | None]:
        """A batch workflow's status and, once it succeeded, its summary (retried chunks
        merged in, as `publish --wait` and the API show it)."""
        with dbos_gateway.client(self.system_db) as client:
            return lifecycle.batch_outcome(client, batch_id)

    def positions(self, batch_id: str) -> list[int]:
        """The positions of a batch's messages in the ledger, repeats included."""
        with short_lived_engine(self.app_db) as engine, engine.connect() as conn:
            return ledger.batch_positions(conn, batch_id)

    def ledger_rows(self) -> int:
        with short_lived_engine(self.app_db) as engine, engine.connect() as conn:
            return ledger.row_count(conn)

    def check(self, expected: dict[str, int] | None = None) -> invariants.InvariantReport:
        with read_snapshot(self.app_db) as conn:  # its rows agree even while work runs
            return invariants.check(conn, expected)
