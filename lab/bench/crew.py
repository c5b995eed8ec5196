"""The extra workers of a measurement with `workers` above 1 (Postgres): the measuring process
is worker `bench-0` and starts the others as `python -m lab.bench.worker --join JSON`; each
builds the same settings under its own executor id, prints `ready`, and runs chunk workflows
until its stdin closes (or SIGTERM)."""

from __future__ import annotations

import contextlib
import json
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from types import FrameType
from typing import IO, Any, cast

from dbos_publishers import _runtime as runtime
from dbos_publishers._config import DatabaseUrl, Settings
from dbos_publishers._logs import configure_logging
from dbos_publishers._wire import BatchSummary
from lab.bench.modes import MODES
from lab.bench.spec import Spec, bench_settings, cpu_seconds, executor_id

READY_TIMEOUT_SEC = 120.0  # interpreter start-up, imports and DBOS launch on a busy machine
CLOSE_TIMEOUT_SEC = 30.0
WATCH_INTERVAL_SEC = 0.5  # how often the measuring process checks that its workers are alive
STDERR_TAIL = 240
# What the measuring process and an extra worker say to each other, one line each.
READY, START, STOP = "ready", "start", "stop"


@dataclass
class Member:
    """An extra worker process, seen from the measuring process."""

    executor_id: str
    process: subprocess.Popen[str]
    stderr: IO[str]  # a temporary file: a pipe nobody reads could fill and stall the worker

    def tail(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().strip()[-STDERR_TAIL:] or "(no output on stderr)"

    def failure(self, what: str) -> RuntimeError:
        return RuntimeError(f"bench worker {self.executor_id} {what}: {self.tail()}")

    def await_ready(self, deadline: float) -> None:
        stdout = cast(IO[str], self.process.stdout)
        while True:
            readable, _, _ = select.select([stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not readable:
                raise self.failure(f"not ready after {READY_TIMEOUT_SEC:.0f} s")
            line = stdout.readline()
            if not line:
                code = self.process.wait()
                raise self.failure(f"exited with code {code} before it was ready")
            if line.strip() == READY:
                return

    def close(self, deadline: float) -> tuple[int, str]:
        """Close its stdin (it shuts down and exits), kill it past the deadline: (code, stdout).

        Not `communicate`: it reads the pipe past what `readline` already buffered."""
        with contextlib.suppress(OSError, ValueError):
            cast(IO[str], self.process.stdin).close()
        try:
            self.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        stdout = cast(IO[str], self.process.stdout)
        out = stdout.read()  # a line or two: the pipe never filled, so it never blocked
        stdout.close()
        return self.process.returncode, out


class Crew:
    """The extra workers of one measurement, running while the measuring process submits."""

    def __init__(self, members: list[Member]) -> None:
        self.members = members
        self.cpu_s = 0.0  # theirs, between START and STOP; set when they are closed

    def tell(self, word: str) -> None:
        for member in self.members:
            try:
                stdin = cast(IO[str], member.process.stdin)
                stdin.write(word + "\n")
                stdin.flush()
            except (BrokenPipeError, ValueError):
                raise member.failure(f"exited with code {member.process.wait()}") from None

    def check(self) -> None:
        for member in self.members:
            code = member.process.poll()
            if code is not None:
                raise member.failure(f"exited with code {code} during the measurement")

    def watch(self, wait: Callable[[], list[BatchSummary]]) -> list[BatchSummary]:
        """Run `wait` while checking that every worker is alive: a worker that dies strands its
        PENDING chunks (nobody recovers another executor's work here) and `wait` would never
        return. The waiting thread is a daemon, so a failure does not wait for it."""
        done: Future[list[BatchSummary]] = Future()

        def waiter() -> None:
            try:
                done.set_result(wait())
            except BaseException as exc:
                done.set_exception(exc)

        threading.Thread(target=waiter, name="bench-wait", daemon=True).start()
        while True:
            try:
                return done.result(timeout=WATCH_INTERVAL_SEC)
            except TimeoutError:
                self.check()


@contextmanager
def extra_workers(spec: Spec, settings: Settings) -> Iterator[Crew]:
    """Workers bench-1 .. bench-(N-1), ready; closed on the way out, whatever happened."""
    members: list[Member] = []
    try:
        for index in range(1, spec.workers):
            document = {
                "spec": asdict(spec),
                "system_db": settings.system_db.raw,
                "app_db": settings.app_db.raw,
                "executor_id": executor_id(index),
            }
            stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed below)
            process = subprocess.Popen(
                [sys.executable, "-m", "lab.bench.worker", "--join", json.dumps(document)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
            members.append(Member(executor_id(index), process, stderr))
        deadline = time.monotonic() + READY_TIMEOUT_SEC
        for member in members:
            member.await_ready(deadline)
        crew = Crew(members)
        yield crew
    finally:
        deadline = time.monotonic() + CLOSE_TIMEOUT_SEC
        closed = [(member, *member.close(deadline)) for member in members]
        tails = {member.executor_id: member.tail() for member, code, _ in closed if code != 0}
        for member in members:
            member.stderr.close()
    # Reached only when the measurement itself succeeded.
    if tails:
        raise RuntimeError(f"bench workers failed at shutdown: {tails}")
    crew.cpu_s = sum(float(json.loads(out.splitlines()[-1])["cpu_s"]) for _, _, out in closed)


def join(document: dict[str, Any]) -> int:
    """An extra worker: launch under the given executor id, say `ready`, run chunk workflows
    until stdin closes (or SIGTERM), print {"cpu_s"} between START and STOP, shut down."""
    spec = Spec(**document["spec"])
    mode = MODES[spec.mode]  # type: ignore[index]
    configure_logging("json", "WARNING")
    settings = bench_settings(
        spec,
        mode,
        DatabaseUrl.parse(document["system_db"], "system database"),
        DatabaseUrl.parse(document["app_db"], "app database"),
    )
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    rt = runtime.build(
        runtime.validate(settings), isolation=mode.isolation, executor_id=document["executor_id"]
    )
    try:
        runtime.launch(rt)
        sys.stdout.write(READY + "\n")
        sys.stdout.flush()
        marks: dict[str, float] = {}
        for line in sys.stdin:  # until the measuring process closes it
            marks[line.strip()] = cpu_seconds()
        cpu_s = marks.get(STOP, cpu_seconds()) - marks.get(START, cpu_seconds())
        sys.stdout.write(json.dumps({"cpu_s": round(cpu_s, 3)}) + "\n")
        sys.stdout.flush()
    finally:
        runtime.shutdown(rt)
    return 0


def _exit_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)  # through `join`'s finally: DBOS shuts down cleanly
