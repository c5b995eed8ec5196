"""Test helpers: the real service in a subprocess, the real CLI, and reads of both databases."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dbos import DBOSClient, WorkflowStatus

from app import invariants
from app.config import Settings
from app.database import short_lived_engine
from app.publishers.base import batch_workflow_id

Backend = Literal["sqlite", "postgres"]
ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_SEC = 90
BATCH_TIMEOUT_SEC = 180


VENV_BIN = Path(sys.executable).parent
SERVE = [sys.executable, "-m", "app", "serve"]


def _descendants(pid: int) -> list[int]:
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


@dataclass(frozen=True)
class Databases:
    backend: Backend
    system_url: str
    app_url: str


@dataclass
class ServiceRunner:
    databases: Databases
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    log_paths: list[Path] = field(default_factory=list)
    publishers_file: Path | None = None
    http_port: int | None = None  # None: the service runs without its HTTP API
    extra_env: dict[str, str] = field(default_factory=dict)

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
        name: str = "publishers.toml",
    ) -> Path:
        """Write a publishers file (name -> class path) and use it from now on."""
        publishers = publishers or {"orders": "app.publishers.events:EventPublisher"}
        lines = [
            f"[defaults]\nchunk_size = {chunk_size}\n",
            f"[queues]\nchunk_concurrency = {chunk_concurrency}\npolling_interval_sec = 0.1\n",
        ]
        lines += [f'[[publishers]]\nname = "{n}"\nclass = "{c}"\n' for n, c in publishers.items()]
        self.publishers_file = self.workdir / name
        self.publishers_file.write_text("\n".join(lines))
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
            **self.extra_env,
        }
        env.update(extra)
        return env

    def settings(self) -> Settings:
        return Settings.from_env(self.env())

    # ---- the service process --------------------------------------------------------------

    def start(
        self, failpoints: str = "", *, wait_ready: bool = True, via_dbos_start: bool = False
    ) -> None:
        """Start `python -m app serve`, or `dbos start` from the project root (which runs it)."""
        self.starts += 1
        log_path = self.workdir / f"serve-{self.starts}.log"
        self.log_paths.append(log_path)
        command = [str(VENV_BIN / "dbos"), "start"] if via_dbos_start else SERVE
        env = self.env(APP_FAILPOINTS=failpoints)
        env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"  # `python` in dbos-config.yaml
        with log_path.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT if via_dbos_start else self.workdir,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if wait_ready:
            self._wait_for_event("service_ready")

    def _wait_for_event(self, event: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SEC
        while time.monotonic() < deadline:
            if any(r.get("event") == event for r in self.records()):
                return
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"service exited ({self.process.returncode}):\n{self.tail()}")
            time.sleep(0.1)
        raise AssertionError(f"service never logged {event}:\n{self.tail()}")

    def wait_exit(self, timeout: float = BATCH_TIMEOUT_SEC) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def kill(self) -> None:
        """SIGKILL the service and everything it started (`dbos start` runs it in a child)."""
        if self.process is not None and self.process.poll() is None:
            for pid in [*_descendants(self.process.pid), self.process.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def records(self, start: int | None = None) -> list[dict[str, Any]]:
        """JSON log records of one start (default: the latest)."""
        path = self.log_paths[(start or self.starts) - 1]
        out = []
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_paths[-1].read_text(errors="replace").splitlines()[-lines:])

    # ---- the CLI --------------------------------------------------------------------------

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app", *args],
            cwd=self.workdir,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=BATCH_TIMEOUT_SEC,
            check=False,
        )

    def publish(self, publisher: str, count: int, batch_id: str, *extra: str) -> None:
        done = self.cli("publish", publisher, "--count", str(count), "--batch-id", batch_id, *extra)
        assert done.returncode == 0, done.stderr

    # ---- reading state --------------------------------------------------------------------

    def client(self) -> DBOSClient:
        return DBOSClient(system_database_url=self.databases.system_url)

    def wait_batch(self, batch_id: str, timeout: float = BATCH_TIMEOUT_SEC) -> dict[str, Any]:
        """Wait for a batch workflow to succeed and return its summary."""
        client = self.client()
        try:
            handle = client.retrieve_workflow(batch_workflow_id(batch_id))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                status = handle.get_status().status
                if status == "SUCCESS":
                    summary: dict[str, Any] = handle.get_result()
                    return summary
                if status not in ("PENDING", "ENQUEUED"):
                    raise AssertionError(f"batch {batch_id} ended {status}:\n{self.tail()}")
                time.sleep(0.2)
        finally:
            client.destroy()
        raise AssertionError(f"batch {batch_id} did not finish in {timeout}s:\n{self.tail()}")

    def workflows(self, batch_id: str) -> list[WorkflowStatus]:
        """The batch workflow and its chunk workflows."""
        client = self.client()
        try:
            parent = batch_workflow_id(batch_id)
            return client.list_workflows(
                workflow_ids=[parent], load_input=False, load_output=False
            ) + client.list_workflows(
                workflow_id_prefix=f"{parent}/", load_input=False, load_output=False
            )
        finally:
            client.destroy()

    def steps(self, batch_id: str) -> dict[tuple[str, int], dict[str, Any]]:
        """Every recorded step of a batch's workflows, keyed by (workflow id, step id)."""
        workflows = self.workflows(batch_id)
        client = self.client()
        try:
            return {
                (wf.workflow_id, step["function_id"]): dict(step)
                for wf in workflows
                for step in client.list_workflow_steps(wf.workflow_id)
            }
        finally:
            client.destroy()

    def active_workflows(self) -> list[str]:
        client = self.client()
        try:
            active = client.list_workflows(status=["PENDING", "ENQUEUED"], load_input=False)
            return [wf.workflow_id for wf in active]
        finally:
            client.destroy()

    def check(self, expected: dict[str, int] | None = None) -> invariants.InvariantReport:
        with short_lived_engine(self.settings().app_db) as engine, engine.connect() as conn:
            return invariants.check(conn, expected)
