"""A network-namespace lab: an isolated LAN for multicast and real-Apache tests. Root only.

Topology (prefix "hbl", three backends):

    hbl-br      bridge br0 (multicast snooping off, so every group datagram is flooded)
                  ports v-front, v-b1, v-b2, v-b3: one end of each veth pair
    hbl-front   eth0 10.213.0.1/24     the front (proxy) host
    hbl-b1      eth0 10.213.0.11/24    backend hosts: .11, .12, .13, ...
    hbl-b2      eth0 10.213.0.12/24
    ...

With `fronts=N` (for high-availability tests) the extra fronts are front2, front3, ... at .2,
.3, ...; with `clients=N`, client hosts c1, c2, ... at .241, .242, ...; `Lab.virtual_ip`
(.250) is an address no host has, for keepalived to move between fronts. The default (one
front, no clients) is the topology above.

Every host namespace has `lo` up and `224.0.0.0/4` routed to eth0: with no default route, a
multicast sendto() would otherwise fail with ENETUNREACH. Every interface is created inside a
lab namespace (the veth is made in the bridge namespace and its peer moved straight into the
host's), so the root namespace gets no interface, and no traffic leaves it.

    with Lab(prefix="hbt123", backends=3) as lab:
        proc = lab.popen("b1", ["apache2", "-f", conf, "-DFOREGROUND"])
        lab.run("front", ["curl", "-s", "http://10.213.0.11/"])

`Lab.down()` (also run at exit, and by `down(prefix)`) stops any process still inside a lab
namespace, by pid, then deletes the namespaces; deleting a namespace destroys its veth ends.
Each lab is a separate layer-2 domain, so labs with different prefixes never clash even though
they reuse the same addresses. Standard library only.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_PREFIX = "hbl"
DEFAULT_SUBNET = "10.213.0"   # a /24; the last octet is added per host
DEFAULT_BACKENDS = 3
FRONT_OCTET = 1
MAX_FRONTS = 9           # .1 .. .9
BACKEND_FIRST_OCTET = 11
CLIENT_FIRST_OCTET = 241
MAX_CLIENTS = 9          # .241 .. .249
VIRTUAL_OCTET = 250
MULTICAST_ROUTE = "224.0.0.0/4"
HOST_IFACE = "eth0"
BRIDGE = "br0"
MAX_BACKENDS = 200  # .11 .. .210 stay inside the /24
STOP_GRACE = 2.0


class LabError(RuntimeError):
    """An `ip` command failed; the message carries its stderr."""


@dataclass(frozen=True)
class Host:
    name: str       # "front", "b1", ...
    netns: str      # "<prefix>-front"
    address: str    # IPv4 address of its eth0

    @property
    def port_name(self) -> str:
        """Its veth end in the bridge namespace (interface names are at most 15 bytes)."""
        return f"v-{self.name}"[:15]


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip ARGS`; raise LabError with its stderr on failure when `check`."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done


def unavailable_reason() -> str | None:
    """Why a lab cannot be built here, or None if it can (probes with a throwaway namespace)."""
    if os.geteuid() != 0:
        return "network namespaces need root (run the tests as root)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = f"hbprobe{os.getpid()}"
    done = ip("netns", "add", probe, check=False)
    if done.returncode != 0:
        return f"`ip netns add` is not permitted here: {done.stderr.strip()}"
    try:
        done = ip("-n", probe, "link", "add", BRIDGE, "type", "bridge", check=False)
        if done.returncode != 0:
            return f"cannot create a bridge in a namespace: {done.stderr.strip()}"
        done = ip("-n", probe, "link", "add", "va", "type", "veth", "peer", "name", "vb",
                  check=False)
        if done.returncode != 0:
            return f"cannot create a veth pair in a namespace: {done.stderr.strip()}"
    finally:
        ip("netns", "delete", probe, check=False)
    return None


def unique_prefix(base: str = "hbt") -> str:
    """A prefix no other live run uses: the pid is unique among live processes."""
    return f"{base}{os.getpid()}"


def lab_namespaces(prefix: str) -> list[str]:
    """Namespaces that belong to the lab `prefix` (named `<prefix>-...`)."""
    done = ip("netns", "list", check=False)
    names = [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
    return sorted(name for name in names if name.startswith(prefix + "-"))


def namespace_pids(netns: str) -> list[int]:
    done = ip("netns", "pids", netns, check=False)
    return [int(word) for word in done.stdout.split() if word.isdigit()]


def stop_pids(pids: Sequence[int], grace: float = STOP_GRACE) -> None:
    """SIGTERM the given pids, SIGKILL whichever is still alive after `grace` seconds."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _alive(pid)]
        time.sleep(0.05)
    for pid in alive:
        _signal(pid, signal.SIGKILL)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (a zombie child of ours counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def down(prefix: str) -> list[str]:
    """Remove every namespace named `<prefix>-...`, first stopping (by pid) what runs inside.

    Returns the namespaces removed. Safe to call when nothing is there."""
    namespaces = lab_namespaces(prefix)
    pids = sorted({pid for ns in namespaces for pid in namespace_pids(ns)})
    if pids:
        stop_pids(pids)
    for ns in namespaces:
        ip("netns", "delete", ns, check=False)
    return namespaces


class Lab:
    """One lab: a bridge namespace, a front host and `backends` backend hosts."""

    def __init__(self, prefix: str = DEFAULT_PREFIX, backends: int = DEFAULT_BACKENDS,
                 subnet: str = DEFAULT_SUBNET, keep: bool = False, fronts: int = 1,
                 clients: int = 0) -> None:
        if not 1 <= backends <= MAX_BACKENDS:
            raise ValueError(f"backends must be from 1 to {MAX_BACKENDS}, got {backends}")
        if not 1 <= fronts <= MAX_FRONTS:
            raise ValueError(f"fronts must be from 1 to {MAX_FRONTS}, got {fronts}")
        if not 0 <= clients <= MAX_CLIENTS:
            raise ValueError(f"clients must be from 0 to {MAX_CLIENTS}, got {clients}")
        self.prefix = prefix
        self.subnet = subnet
        self.keep = keep   # True for `netns-lab up`: the lab outlives this process
        self.bridge_netns = f"{prefix}-br"
        self.hosts: dict[str, Host] = {"front": self._host("front", FRONT_OCTET)}
        for number in range(2, fronts + 1):
            self.hosts[f"front{number}"] = self._host(f"front{number}", FRONT_OCTET + number - 1)
        for number in range(1, backends + 1):
            name = f"b{number}"
            self.hosts[name] = self._host(name, BACKEND_FIRST_OCTET + number - 1)
        for number in range(1, clients + 1):
            self.hosts[f"c{number}"] = self._host(f"c{number}", CLIENT_FIRST_OCTET + number - 1)
        self._is_up = False

    def _host(self, name: str, octet: int) -> Host:
        return Host(name, f"{self.prefix}-{name}", f"{self.subnet}.{octet}")

    # --- lifetime

    def up(self) -> Lab:
        """Build the lab. A leftover lab with the same prefix is removed first."""
        down(self.prefix)
        if not self.keep:
            atexit.register(self.down)
        self._is_up = True
        try:
            self._make_bridge()
            for host in self.hosts.values():
                self._make_host(host)
        except BaseException:
            self.down()
            raise
        return self

    def down(self) -> None:
        if self._is_up:
            self._is_up = False
            down(self.prefix)

    def __enter__(self) -> Lab:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    def _make_bridge(self) -> None:
        ns = self.bridge_netns
        ip("netns", "add", ns)
        ip("-n", ns, "link", "set", "lo", "up")
        # Snooping off: with no IGMP querier on this LAN, a snooping bridge may stop flooding
        # a group once it has seen a report; the lab wants plain flooding.
        ip("-n", ns, "link", "add", BRIDGE, "type", "bridge", "mcast_snooping", "0",
           "stp_state", "0")
        ip("-n", ns, "link", "set", BRIDGE, "up")

    def _make_host(self, host: Host) -> None:
        ns = host.netns
        ip("netns", "add", ns)
        ip("-n", ns, "link", "set", "lo", "up")
        # Made inside the bridge namespace and moved straight on: nothing touches the root one.
        ip("-n", self.bridge_netns, "link", "add", host.port_name, "type", "veth",
           "peer", "name", HOST_IFACE, "netns", ns)
        ip("-n", self.bridge_netns, "link", "set", host.port_name, "master", BRIDGE, "up")
        ip("-n", ns, "addr", "add", f"{host.address}/24", "dev", HOST_IFACE)
        ip("-n", ns, "link", "set", HOST_IFACE, "up")
        ip("-n", ns, "route", "add", MULTICAST_ROUTE, "dev", HOST_IFACE)

    # --- using it

    def host(self, name: str) -> Host:
        """A host by its short name ("front", "b1") or its namespace name."""
        for host in self.hosts.values():
            if name in (host.name, host.netns):
                return host
        raise KeyError(f"no host {name!r} in lab {self.prefix} "
                       f"(hosts: {', '.join(self.hosts)})")

    @property
    def backends(self) -> list[Host]:
        return [h for name, h in self.hosts.items() if name[:1] == "b"]

    @property
    def fronts(self) -> list[Host]:
        return [h for name, h in self.hosts.items() if name.startswith("front")]

    @property
    def clients(self) -> list[Host]:
        return [h for name, h in self.hosts.items() if name[:1] == "c"]

    @property
    def virtual_ip(self) -> str:
        """An address of the lab's subnet that no host has (for VRRP tests)."""
        return f"{self.subnet}.{VIRTUAL_OCTET}"

    def command(self, host: str, argv: Sequence[str]) -> list[str]:
        """argv that runs `argv` inside `host`. `ip netns exec` execs in place (no fork), so
        the pid of a Popen of this command is the pid of the program itself."""
        return ["ip", "netns", "exec", self.host(host).netns, *argv]

    def run(self, host: str, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("check", False)
        return subprocess.run(self.command(host, argv), **kwargs)

    def popen(self, host: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        return subprocess.Popen(self.command(host, argv), **kwargs)

    def status(self) -> str:
        return status(self.prefix)


def status(prefix: str) -> str:
    """A readable summary of the lab `prefix`: namespaces, addresses, processes inside."""
    namespaces = lab_namespaces(prefix)
    if not namespaces:
        return f"no lab with prefix {prefix!r}"
    lines = []
    for ns in namespaces:
        done = ip("-n", ns, "-brief", "addr", "show", check=False)
        addresses = [" ".join(line.split()) for line in done.stdout.splitlines()
                     if not line.startswith("lo ")]
        pids = namespace_pids(ns)
        lines.append(f"{ns}: {'; '.join(addresses) or '(no interfaces)'}"
                     + (f"; pids {' '.join(map(str, pids))}" if pids else ""))
    return "\n".join(lines)
