"""The binary-upgrade conversation between a running master and the master it execs.

Pure: messages in, values or a ValueError out; the sockets (one SOCK_SEQPACKET pair, so every
message arrives whole) and the file descriptors passed with the first one belong to
hbfork.master.upgrade (old side) and hbfork.master.adoption (new side).

    old -> new   hello      JSON: who the old master is, and what each passed fd is
    new -> old   ready      the new master's workers are serving (its pid, version, load time)
    new -> old   failed     it cannot serve (a config error, a socket it cannot use, ...)
    old -> new   handed     the old master stopped reading heartbeats and control requests;
                            the new one takes them, and the pid file, from here on
    new -> old   taken      it did (the pid file names it): `ctl upgrade` may answer now

The old master goes on serving until "handed", and stays the one to ask (pid file, control
socket) until then: a new master that dies at any point before leaves everything as it was.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hbfork.core.addresses import Endpoint, parse_endpoint

PROTOCOL = 1
ENV_FD = "HBFORK_UPGRADE_FD"  # the new master's end of the pair, inherited through exec
MAX_MESSAGE = 65536
HANDED = b"handed"
TAKEN = b"taken"

# What a passed socket is for. Listener and status are TCP listeners, heartbeat the UDP
# socket (with the interface it joined the group on), control the Unix control listener.
LISTENER, STATUS, HEARTBEAT, CONTROL = "listener", "status", "heartbeat", "control"
ROLES = (LISTENER, STATUS, HEARTBEAT, CONTROL)


@dataclass(frozen=True, slots=True)
class Passed:
    role: str
    address: str              # an endpoint, or the control socket's path
    interface: str | None = None

    @property
    def endpoint(self) -> Endpoint:
        return parse_endpoint(self.address)


@dataclass(frozen=True, slots=True)
class Hello:
    parent: int               # the old master's pid
    table: str                # its table's name: the new master copies the members from it
    pidfile: str | None
    control_socket: str | None
    sockets: tuple[Passed, ...]  # in the order of the passed fds


def encode_hello(hello: Hello) -> bytes:
    return json.dumps({
        "upgrade": PROTOCOL, "parent": hello.parent, "table": hello.table,
        "pidfile": hello.pidfile, "control_socket": hello.control_socket,
        "sockets": [[s.role, s.address, s.interface] for s in hello.sockets],
    }).encode()


def decode_hello(data: bytes, fds: int) -> Hello:
    """The hello of an old master that passed `fds` descriptors; ValueError if it is not one
    this code understands (the new master then refuses to start, and says why)."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"upgrade hello is not JSON: {err}") from None
    if not isinstance(doc, dict) or doc.get("upgrade") != PROTOCOL:
        raise ValueError(f"upgrade protocol {doc.get('upgrade') if isinstance(doc, dict) else '?'}"
                         f" is not {PROTOCOL}")
    try:
        sockets = tuple(_passed(entry) for entry in doc["sockets"])
        hello = Hello(int(doc["parent"]), str(doc["table"]), _optional(doc["pidfile"]),
                      _optional(doc["control_socket"]), sockets)
    except (KeyError, TypeError) as err:
        raise ValueError(f"upgrade hello is incomplete: {err!r}") from None
    if len(sockets) != fds:
        raise ValueError(f"upgrade hello names {len(sockets)} sockets, {fds} were passed")
    return hello


def _passed(entry: list[Any]) -> Passed:
    role, address, interface = entry
    if role not in ROLES:
        raise ValueError(f"upgrade hello: unknown socket role {role!r}")
    if role != CONTROL:
        parse_endpoint(address)  # a ValueError if malformed
    return Passed(role, str(address), _optional(interface))


def _optional(value: object) -> str | None:
    return None if value is None else str(value)


def encode_ready(pid: int, version: str, loaded: float) -> bytes:
    return f"ready {pid} {version} {loaded:.6f}".encode()


def encode_failed(reason: str) -> bytes:
    return ("failed " + " ".join(reason.split())).encode()[:MAX_MESSAGE]


@dataclass(frozen=True, slots=True)
class Reply:
    """What the new master said: ready (with pid, version, load time) or failed (reason)."""
    ok: bool
    reason: str = ""
    pid: int = 0
    version: str = ""
    loaded: float = 0.0


def decode_reply(data: bytes) -> Reply:
    """A new master's message; an unknown one counts as a failure, never as ready."""
    text = data.decode("utf-8", "replace")
    verb, _, rest = text.partition(" ")
    if verb == "failed":
        return Reply(False, rest or "no reason given")
    if verb == "ready":
        parts = rest.split()
        try:
            return Reply(True, pid=int(parts[0]), version=parts[1], loaded=float(parts[2]))
        except (IndexError, ValueError):
            pass
    return Reply(False, f"unexpected message from the new master: {text[:80]!r}")
