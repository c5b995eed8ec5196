"""A network namespace for one worker of `fleet/partition`: a veth pair on a private /30, the
host's end carrying the address the lab's own Postgres also listens on. Cutting the link (the
host end down) is a partition: no packet passes either way, no connection is told, exactly as a
pulled cable or a dead switch; healing brings it up again. Needs root and `ip` (iproute2); no
iptables. Removed on every exit; namespaces a killed lab left behind are removed at the next."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lab.scenarios.harness import HarnessError

PREFIX = "labpart"  # namespace names: PREFIX + the lab's pid, so a stale one names its owner
SUBNET = "10.231"  # /30s inside 10.231.0.0/16, chosen by pid
IP_TIMEOUT_SEC = 30


@dataclass(frozen=True)
class Namespace:
    name: str
    host_if: str  # the veth end on the host (interface names: at most 15 characters)
    ns_if: str
    host_ip: str
    ns_ip: str

    def exec_prefix(self) -> tuple[str, ...]:
        """Run a command inside the namespace (`ip netns exec` execs it: the same pid)."""
        return (_ip_tool(), "netns", "exec", self.name)

    def cut(self) -> None:
        _ip("link", "set", self.host_if, "down")

    def heal(self) -> None:
        _ip("link", "set", self.host_if, "up")


def _ip_tool() -> str:
    found = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin")
    if found is None:
        raise HarnessError("fleet/partition needs `ip` (iproute2) on this machine")
    return found


def _ip(*args: str, netns: str | None = None) -> None:
    inside = ("netns", "exec", netns, _ip_tool()) if netns else ()
    done = subprocess.run(
        [_ip_tool(), *inside, *args],
        capture_output=True,
        text=True,
        timeout=IP_TIMEOUT_SEC,
        check=False,
    )
    if done.returncode != 0:
        raise HarnessError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")


def _for_pid(pid: int) -> Namespace:
    slot = pid % 16384  # 16384 /30s in a /16
    network, last = f"{SUBNET}.{slot // 64}", (slot % 64) * 4
    return Namespace(
        name=f"{PREFIX}{pid}",
        host_if=f"lph{pid}",
        ns_if=f"lpn{pid}",
        host_ip=f"{network}.{last + 1}",
        ns_ip=f"{network}.{last + 2}",
    )


def _create(ns: Namespace) -> None:
    _ip("netns", "add", ns.name)
    _ip("link", "add", ns.host_if, "type", "veth", "peer", "name", ns.ns_if)
    _ip("link", "set", ns.ns_if, "netns", ns.name)
    _ip("addr", "add", f"{ns.host_ip}/30", "dev", ns.host_if)
    _ip("link", "set", ns.host_if, "up")
    _ip("addr", "add", f"{ns.ns_ip}/30", "dev", ns.ns_if, netns=ns.name)
    _ip("link", "set", ns.ns_if, "up", netns=ns.name)
    _ip("link", "set", "lo", "up", netns=ns.name)


def _remove(ns: Namespace) -> None:
    """Deleting the namespace deletes its veth end, and with it the pair; the host end is
    deleted too in case the namespace was never made."""
    with contextlib.suppress(HarnessError):
        _ip("netns", "del", ns.name)
    with contextlib.suppress(HarnessError):
        _ip("link", "del", ns.host_if)


def _remove_stale() -> None:
    """Namespaces of labs that are gone (SIGKILLed by a test's timeout, say)."""
    for entry in Path("/run/netns").glob(f"{PREFIX}*"):
        owner = entry.name.removeprefix(PREFIX)
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            _remove(_for_pid(int(owner)))


@contextlib.contextmanager
def namespace() -> Iterator[Namespace]:
    """A fresh namespace with its link up; removed however the block ends."""
    if os.geteuid() != 0:
        raise HarnessError("fleet/partition needs root (ip netns, a veth pair)")
    _remove_stale()
    ns = _for_pid(os.getpid())
    _remove(ns)  # a leftover of an earlier lab with this pid
    try:
        _create(ns)
        yield ns
    finally:
        _remove(ns)
