"""A throwaway Postgres cluster the lab owns: `initdb` and `pg_ctl` from the machine's Postgres
binaries, in a temporary directory, on a free loopback port, removed afterwards. The lab may stop,
restart and crash it freely; nobody else's database is touched."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from dbos_publishers._config import DatabaseUrl
from dbos_publishers._errors import AppError
from dbos_publishers.store._database import short_lived_engine

PG_CTL_TIMEOUT_SEC = 120
# Postgres refuses to run as root: as root, the cluster runs as this system user.
SERVER_USER = "postgres"
SERVER_SETTINGS = (
    "-c max_connections=200 -c fsync=off "
    "-c full_page_writes=off -c shared_buffers=64MB"  # fsync off: a process crash keeps its WAL
)


class ClusterError(AppError):
    """The lab's own Postgres cluster could not be set up or driven."""


def _bin_dir() -> Path:
    """Where initdb and pg_ctl live: PATH first, then Debian's versioned directories."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), reverse=True)
    if not versions:
        raise ClusterError("no Postgres server binaries (pg_ctl, initdb) on this machine")
    return versions[0].parent


def _runuser() -> str:
    """runuser, also where a minimal PATH (no sbin) does not look."""
    found = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
    if found is None:
        raise ClusterError("running as root, and no runuser to start Postgres as postgres")
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Cluster:
    """One Postgres server: `url` is its superuser's URL on database `postgres`."""

    root: Path
    port: int
    bin_dir: Path
    listen: str = "127.0.0.1"  # listen_addresses: loopback, and for fleet/partition a veth end

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin_dir / tool), *args]
        if os.geteuid() == 0:
            command = [_runuser(), "-u", SERVER_USER, "--", *command]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=PG_CTL_TIMEOUT_SEC, check=False
        )
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ClusterError(f"{tool} {args[0] if args else ''} failed: {last[0]}")

    def init(self) -> None:
        if os.geteuid() == 0:
            account = pwd.getpwnam(SERVER_USER)
            os.chown(self.root, account.pw_uid, account.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync")

    def trust(self, client_ip: str) -> None:
        """Let one more address connect (initdb's pg_hba.conf trusts loopback only)."""
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {client_ip}/32 trust\n")

    def start(self) -> None:
        listen = f"-c listen_addresses={self.listen}"
        options = f"-p {self.port} -k {self.root} {listen} {SERVER_SETTINGS}"
        self._run("pg_ctl", "start", "-w", "-D", str(self.data), "-l", str(self.log), "-o", options)

    def stop(self, mode: str = "fast") -> None:
        """`fast`: a clean shutdown; `immediate`: a crash (WAL replay at the next start)."""
        self._run("pg_ctl", "stop", "-w", "-D", str(self.data), "-m", mode)

    def restart(self) -> None:
        self.stop("fast")
        self.start()

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def terminate(self, database: str) -> int:
        """`pg_terminate_backend` every other client connection to `database`; how many."""
        admin = DatabaseUrl.parse(self.url, "cluster")
        with short_lived_engine(admin) as engine, engine.connect() as conn:
            ended = conn.execute(
                sa.text(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM "
                    "pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend'"
                ),
                {"db": database},
            ).scalar_one()
        return int(ended)


@contextlib.contextmanager
def own_cluster(also_listen: str = "", client_ip: str = "") -> Iterator[Cluster]:
    """A new cluster, started; stopped (immediately: it holds nothing to keep) and removed.
    `also_listen`: one more address to listen on; `client_ip`: one more client to trust."""
    with tempfile.TemporaryDirectory(prefix="lab-pg-") as tmp:
        listen = ",".join(filter(None, ("127.0.0.1", also_listen)))
        cluster = Cluster(Path(tmp), _free_port(), _bin_dir(), listen)
        cluster.init()
        if client_ip:
            cluster.trust(client_ip)
        cluster.start()
        try:
            yield cluster
        finally:
            if cluster.running():
                with contextlib.suppress(ClusterError):
                    cluster.stop("immediate")
            _wait_gone(cluster)


def _wait_gone(cluster: Cluster, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while cluster.running() and time.monotonic() < deadline:
        time.sleep(0.05)
