"""Operator states of a member in one pool: drained (only its sticky sessions) or disabled (no
traffic), set by the config (`[[pool.member]] drain/disabled`) and by `hbfork ctl drain
POOL/MEMBER`. Pure: the master owns one, and publishes its entries in the table.

A change in the file wins over what `ctl` set before it (as for `[[member]] disabled`); a reload
that leaves the file's value alone keeps the operator's state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from hbfork.core.addresses import Endpoint
from hbfork.core.members import Member
from hbfork.core.pool_settings import PoolSettings

POOL_DRAINED, POOL_DISABLED = 1, 2


def flags_of(drained: bool, disabled: bool) -> int:
    return (POOL_DRAINED if drained else 0) | (POOL_DISABLED if disabled else 0)


@dataclass
class PoolAdmin:
    states: dict[tuple[str, Endpoint], int] = field(default_factory=dict)      # in effect
    configured: dict[tuple[str, Endpoint], int] = field(default_factory=dict)  # file says
    pools: set[str] = field(default_factory=set)
    dirty: bool = True

    def configure(self, pools: Iterable[PoolSettings]) -> None:
        """Take the file's states; keep an operator's where the file did not change."""
        wanted: dict[tuple[str, Endpoint], int] = {}
        self.pools = set()
        for pool in pools:
            self.pools.add(pool.name)
            for member in pool.members:
                wanted[(pool.name, member.address)] = flags_of(member.drain, member.disabled)
        for key, flags in wanted.items():
            if self.configured.get(key, 0) != flags:
                self.states[key] = flags
        for key in list(self.states):
            if key[0] not in self.pools:
                del self.states[key]
        self.configured = wanted
        self.dirty = True

    def set(self, pool: str, address: Endpoint, *, drained: bool | None = None,
            disabled: bool | None = None) -> int:
        """Change an operator state; returns the flags now in effect."""
        flags = self.states.get((pool, address), 0)
        if drained is not None:
            flags = flags | POOL_DRAINED if drained else flags & ~POOL_DRAINED
        if disabled is not None:
            flags = flags | POOL_DISABLED if disabled else flags & ~POOL_DISABLED
        self.states[(pool, address)] = flags
        self.dirty = True
        return flags

    def get(self, pool: str, address: Endpoint) -> int:
        return self.states.get((pool, address), 0)

    def entries(self, find: Callable[[Endpoint], Member | None]) -> list[tuple[str, int, int]]:
        """(pool, member uid, flags) for every state that is set, as the table holds them."""
        out = []
        for (pool, address), flags in sorted(self.states.items(), key=lambda kv: str(kv[0])):
            member = find(address)
            if flags and member is not None:
                out.append((pool, member.uid, flags))
        return out
