"""The master's bound sockets, changed all-or-nothing on reload.

A reload first binds everything the new config adds (a Plan); only when every bind worked does
it commit, closing what was replaced. A failed reload closes what the plan bound and leaves
the running sockets exactly as they were.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass, field

from hbfork.core.addresses import Endpoint
from hbfork.core.config import Config
from hbfork.core.errors import HbforkError
from hbfork.system.sockets import bind_listener, open_heartbeat_socket

HeartbeatKey = tuple[Endpoint, str | None]  # the address and the interface it joins on
STATUS_BACKLOG = 128


@dataclass
class Plan:
    """New sockets a config needs, not yet in use. `None` means "unchanged"."""
    listeners: dict[Endpoint, socket.socket] = field(default_factory=dict)
    status: tuple[Endpoint | None, socket.socket | None] | None = None
    heartbeat: tuple[HeartbeatKey, socket.socket] | None = None

    def close(self) -> None:
        for sock in self.listeners.values():
            sock.close()
        if self.status is not None and self.status[1] is not None:
            self.status[1].close()
        if self.heartbeat is not None:
            self.heartbeat[1].close()


@dataclass
class Bindings:
    listeners: dict[Endpoint, socket.socket] = field(default_factory=dict)
    status_endpoint: Endpoint | None = None
    status_listener: socket.socket | None = None
    heartbeat_key: HeartbeatKey | None = None
    heartbeat_sock: socket.socket | None = None

    @property
    def heartbeat(self) -> socket.socket:
        """The heartbeat socket, once a plan has been committed."""
        assert self.heartbeat_sock is not None
        return self.heartbeat_sock

    def prepare(self, config: Config) -> Plan:
        """Bind what `config` needs and is not bound yet; raises HbforkError (nothing kept)."""
        plan = Plan()
        try:
            for endpoint in (entry.address for entry in config.listeners):
                if endpoint not in self.listeners:
                    plan.listeners[endpoint] = _bind(endpoint, config.proxy.backlog, "")
            wanted = config.status.listen
            if wanted != self.status_endpoint:
                new = _bind(wanted, STATUS_BACKLOG, " (status)") if wanted else None
                plan.status = (wanted, new)
            hb = config.heartbeat
            key = (hb.listen, hb.interface)
            if key != self.heartbeat_key:
                plan.heartbeat = (key, _open_heartbeat(hb.listen, hb.interface))
        except HbforkError:
            plan.close()
            raise
        return plan

    def commit(self, plan: Plan) -> socket.socket | None:
        """Put a plan's sockets in use; returns the replaced heartbeat socket (still open:
        the caller unregisters it from its selector, then closes it)."""
        self.listeners.update(plan.listeners)
        if plan.status is not None:
            if self.status_listener is not None:
                self.status_listener.close()  # workers of old generations keep their copies
            self.status_endpoint, self.status_listener = plan.status
        replaced = None
        if plan.heartbeat is not None:
            replaced = self.heartbeat_sock
            self.heartbeat_key, self.heartbeat_sock = plan.heartbeat
        return replaced

    def close_listeners_except(self, keep: set[int]) -> list[Endpoint]:
        """Close client listeners whose socket id is not in `keep`; returns their addresses."""
        closed = []
        for endpoint, sock in list(self.listeners.items()):
            if id(sock) not in keep:
                sock.close()
                del self.listeners[endpoint]
                closed.append(endpoint)
        return closed

    def close_all(self) -> None:
        for sock in self.listeners.values():
            sock.close()
        self.listeners.clear()
        for other in (self.status_listener, self.heartbeat_sock):
            if other is not None:
                with contextlib.suppress(OSError):
                    other.close()


def _bind(endpoint: Endpoint, backlog: int, what: str) -> socket.socket:
    try:
        return bind_listener(endpoint, backlog)
    except OSError as err:
        raise HbforkError(f"cannot listen on {endpoint}{what}: {err.strerror}") from None


def _open_heartbeat(endpoint: Endpoint, interface: str | None) -> socket.socket:
    try:
        return open_heartbeat_socket(endpoint, interface)
    except OSError as err:
        raise HbforkError(f"cannot receive heartbeats on {endpoint}: {err.strerror}") from None
