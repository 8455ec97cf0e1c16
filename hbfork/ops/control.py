"""The control socket: `hbfork ctl drain|enable|disable MEMBER` talks to the running master.

A Unix stream socket, mode 0600, owned by the master. One request line per connection
("drain 10.0.0.11:8080\\n"), one reply line ("ok ..." or "error ..."). The master applies the
change to its registry and publishes it in the table at once; the state survives reloads.
MEMBER alone (an address, an IP or a name) changes the member in every pool; POOL/MEMBER
changes it in that pool only (drained there: only its sticky sessions; disabled: nothing).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import time
from collections.abc import Callable

from hbfork.core.errors import HbforkError
from hbfork.core.members import Member, Registry
from hbfork.core.pool_admin import POOL_DISABLED, POOL_DRAINED, PoolAdmin
from hbfork.core.pool_settings import PoolSettings

VERBS = ("drain", "enable", "disable", "list")
MAX_REQUEST = 4096
CLIENT_TIMEOUT = 5.0
DEFERRED_TIMEOUT = 120.0  # a request answered later (`upgrade`) waits at most this long


def select_members(registry: Registry, selector: str) -> list[Member]:
    """Members named by `selector`: "IP:PORT", "[IPv6]:PORT", a bare IP (every member on it),
    or a member's name."""
    found = [m for m in registry if selector in (str(m.endpoint), m.name)]
    if not found:
        found = [m for m in registry if str(m.ip) == selector.strip("[]")]
    return found


def execute(registry: Registry, line: str, now: int, admin: PoolAdmin | None = None,
            pools: tuple[PoolSettings, ...] = (), discover_pool: str = "") -> str:
    """Carry out one request line; returns the reply line. Pure apart from the registry and
    the pool states."""
    parts = line.split()
    if not parts or parts[0] not in VERBS:
        return f"error unknown command {line.strip()[:40]!r}; expected one of {', '.join(VERBS)}"
    verb = parts[0]
    if verb == "list":
        states = [f"{pool}/{address} {_flags(flags)}" for (pool, address), flags
                  in sorted((admin.states if admin else {}).items(), key=str) if flags]
        return "ok " + "; ".join([f"{m.endpoint} {m.reason}" for m in registry] + states)
    if len(parts) != 2:
        return f"error usage: {verb} MEMBER or POOL/MEMBER (address, IP or name)"
    if "/" in parts[1] and admin is not None:
        return _execute_in_pool(registry, admin, pools, discover_pool, verb, parts[1])
    members = select_members(registry, parts[1])
    if not members:
        return f"error no member matches {parts[1]!r}"
    for member in members:
        if verb == "drain":
            registry.set_admin(member, drained=True, now=now)
        elif verb == "disable":
            registry.set_admin(member, disabled=True, now=now)
        else:
            registry.set_admin(member, drained=False, disabled=False, now=now)
    return "ok " + "; ".join(f"{m.endpoint} {m.reason}" for m in members)


def _execute_in_pool(registry: Registry, admin: PoolAdmin, pools: tuple[PoolSettings, ...],
                     discover_pool: str, verb: str, selector: str) -> str:
    pool_name, _, member_selector = selector.partition("/")
    pool = next((p for p in pools if p.name == pool_name), None)
    if pool is None:
        return f"error no pool is named {pool_name!r}"
    listed = {m.address for m in pool.members}
    members = [m for m in select_members(registry, member_selector)
               if m.endpoint in listed or (not m.static and pool.name == discover_pool)]
    if not members:
        return f"error no member of pool {pool_name!r} matches {member_selector!r}"
    replies = []
    for member in members:
        if verb == "drain":
            flags = admin.set(pool.name, member.endpoint, drained=True)
        elif verb == "disable":
            flags = admin.set(pool.name, member.endpoint, disabled=True)
        else:
            flags = admin.set(pool.name, member.endpoint, drained=False, disabled=False)
        replies.append(f"{pool.name}/{member.endpoint} {_flags(flags)}")
    return "ok " + "; ".join(replies)


def _flags(flags: int) -> str:
    if flags & POOL_DISABLED:
        return "disabled"
    return "drained" if flags & POOL_DRAINED else "enabled"


class ControlServer:
    """The master's side: accept, read one line, answer, close. Never blocks the loop.

    `handle` returns the reply, or None for a request answered later by `answer_deferred`
    (an upgrade replies once the new master serves)."""

    def __init__(self, path: str, selector: selectors.BaseSelector,
                 handle: Callable[[str], str | None],
                 adopted: socket.socket | None = None) -> None:
        self.path = path
        self.selector = selector
        self.handle = handle
        self.clients: dict[socket.socket, tuple[bytearray, float]] = {}
        self.deferred: dict[socket.socket, float] = {}
        self.paused_until = 0.0
        self.handed_over = False  # another master serves the path now: never unlink it
        if adopted is not None:  # bound by the master we replace (binary upgrade)
            self.sock = adopted
        else:
            self.sock = _bind(path)
        self.sock.setblocking(False)
        selector.register(self.sock, selectors.EVENT_READ, self._on_accept)

    def _on_accept(self, _: object) -> None:
        for _ in range(16):
            try:
                client, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # Out of fds: the listener stays readable, so stop watching it for a second
                # rather than spin the master loop.
                self.selector.unregister(self.sock)
                self.paused_until = time.monotonic() + 1.0
                return
            client.setblocking(False)
            self.clients[client] = (bytearray(), time.monotonic() + CLIENT_TIMEOUT)
            self.selector.register(client, selectors.EVENT_READ, self._on_client)

    def _on_client(self, client: socket.socket) -> None:
        buffer = self.clients[client][0]
        try:
            data = client.recv(MAX_REQUEST)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        buffer += data
        if b"\n" in buffer or not data or len(buffer) >= MAX_REQUEST:
            line = bytes(buffer).split(b"\n", 1)[0].decode("utf-8", "replace")
            reply = self.handle(line) if line.strip() else "error empty request"
            if reply is None:
                self.clients.pop(client, None)
                with contextlib.suppress(KeyError, ValueError):
                    self.selector.unregister(client)
                self.deferred[client] = time.monotonic() + DEFERRED_TIMEOUT
                return
            _answer(client, reply)
            self._drop(client)

    def answer_deferred(self, reply: str) -> None:
        """Answer every request waiting for a later reply."""
        for client in list(self.deferred):
            _answer(client, reply)
            del self.deferred[client]
            client.close()

    def hand_over(self) -> None:
        """Another master took the socket over: stop accepting, and leave the path to it."""
        self.handed_over = True
        self.paused_until = 0.0
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(self.sock)

    def expire(self) -> None:
        now = time.monotonic()
        if self.paused_until and now >= self.paused_until:
            self.paused_until = 0.0
            self.selector.register(self.sock, selectors.EVENT_READ, self._on_accept)
        for client, (_, deadline) in list(self.clients.items()):
            if now >= deadline:
                self._drop(client)
        for client, deadline in list(self.deferred.items()):
            if now >= deadline:
                _answer(client, "error no answer in time; see the master's log")
                del self.deferred[client]
                client.close()

    def _drop(self, client: socket.socket) -> None:
        self.clients.pop(client, None)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(client)
        client.close()

    def close(self) -> None:
        for client in list(self.clients):
            self._drop(client)
        self.answer_deferred("error the master is stopping")
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(self.sock)
        self.sock.close()
        if not self.handed_over:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def _bind(path: str) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a stale socket: the pidfile already proved no master owns it
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    sock.listen(16)
    return sock


def _answer(client: socket.socket, reply: str) -> None:
    with contextlib.suppress(OSError):
        client.send(reply.encode()[:MAX_REQUEST - 1] + b"\n")


def request(path: str, line: str, timeout: float = 5.0) -> str:
    """The client side: send one request line to the master, return its reply."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except FileNotFoundError:
        raise HbforkError(f"no control socket at {path}: is the master running?") from None
    except ConnectionRefusedError:
        raise HbforkError(f"{path}: nobody is listening (a master that died?)") from None
    except PermissionError:
        raise HbforkError(f"{path}: permission denied (run as the master's user)") from None
    with sock:
        sock.sendall(line.encode() + b"\n")
        reply = bytearray()
        while b"\n" not in reply:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.decode("utf-8", "replace").strip()
