"""A member as a worker connects to it (Target) and a pool as a worker picks from it
(PoolView): built from the config and the table, read by every session; and what
Upstreams.acquire() answers when it found a member (Acquired)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import TypeVar, final

from hbfork.core.balancing import Members
from hbfork.core.http_upgrade import parse_allowed
from hbfork.core.pool_settings import PoolSettings
from hbfork.core.settings import BalanceSettings, HttpSettings

_T = TypeVar("_T")
STICKY_HIT, STICKY_LOST = 1, 2  # the request went to its session's member / it could not


@final  # callers tell the outcomes apart with `type(got) is ...` (mypy narrows on final)
class Acquired:
    """A member with room for the request, already counted in flight there (call finished()
    when the request ends or never went). `sticky`: 0, STICKY_HIT or STICKY_LOST."""
    __slots__ = ("sticky", "target")

    def __init__(self, target: Target, sticky: int = 0) -> None:
        self.target, self.sticky = target, sticky


@dataclass(slots=True, eq=False)
class Target:
    """A member as a worker connects to it."""
    slot: int
    uid: int
    family: int
    sockaddr: tuple[str, int]
    label: str
    counters: int  # index of this member's counters in the worker record
    # acquire()'s answers for this member, by sticky outcome: made once, not per request
    acquired: tuple[Acquired, Acquired, Acquired] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.acquired = (Acquired(self), Acquired(self, STICKY_HIT), Acquired(self, STICKY_LOST))

    @property
    def address(self) -> str:
        """host:port, IPv6 bracketed."""
        host, port = self.sockaddr
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class PoolView:
    """One pool as the worker picks from it: its settings, and its current candidates."""

    __slots__ = ("built", "candidates", "connect_timeout", "cookie_bytes", "cookie_name",
                 "discover", "fail_statuses", "index", "members", "name", "param_bytes",
                 "param_name", "pick", "queue_fresh_offset", "queue_max", "queue_timeout",
                 "response_timeout", "retries", "retry_ms", "retry_on", "retry_statuses",
                 "routes", "separator", "server_name", "settings", "sticky", "tls_context",
                 "upgrades", "weighting")

    def __init__(self, index: int, settings: PoolSettings, http: HttpSettings,
                 balance: BalanceSettings | None = None) -> None:
        balance = balance or BalanceSettings()
        self.index = index
        # The pool's own timeouts and balancing, or the sections'; retry_ms None: the master's
        # [proxy] retry.
        self.connect_timeout = _or(settings.connect_timeout, http.connect_timeout)
        self.response_timeout = _or(settings.response_timeout, http.response_timeout)
        self.retries = _or(settings.retries, http.retries)
        self.retry_ms = None if settings.retry is None else int(settings.retry * 1000)
        self.weighting = settings.weighting or balance.weighting
        self.pick = settings.pick or balance.pick
        self.queue_timeout = _or(settings.queue_timeout, balance.queue_timeout)
        self.queue_max = _or(settings.queue_max, balance.queue_max)
        self.queue_fresh_offset = _or(settings.queue_fresh_offset, balance.queue_fresh_offset)
        self.name = settings.name
        self.settings = settings
        self.members = [(m.address, m.tier) for m in settings.members]
        self.routes = {m.route: m.address for m in settings.members if m.route}
        self.discover = settings.discover
        self.cookie_name, self.param_name = settings.sticky_names
        self.cookie_bytes = self.cookie_name.encode()
        self.param_bytes = self.param_name.encode()
        self.sticky = bool(self.cookie_name)
        self.separator = settings.stickysessionsep
        self.upgrades = parse_allowed(settings.upgrade)
        self.fail_statuses = frozenset(settings.failonstatus)
        self.retry_on = frozenset(settings.retry_on)
        self.retry_statuses = frozenset(s for s in settings.retry_on if isinstance(s, int))
        self.candidates = Members()
        self.built = -1
        self.tls_context: ssl.SSLContext | None = None  # TLS to members (set by the worker)
        self.server_name = settings.tls_server_name


def _or(value: _T | None, default: _T) -> _T:
    return default if value is None else value
